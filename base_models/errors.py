"""The one exception type users see: a short message that names the problem and the fix."""


class ArtalignError(Exception):
    """Bad input or state the user can fix. The CLI prints it on one line and exits with code 2."""
