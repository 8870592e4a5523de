"""Settings of one labeling-app server, and how they travel from `label serve` to the script.

`artalign label serve` parses its options into `AppSettings` and hands them to the Streamlit
script in one environment variable (JSON), because `streamlit run` owns the command line and
`AppTest` runs the script in-process, where argv belongs to pytest. This module does not import
streamlit, so the CLI can use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from base_models.errors import ArtalignError

ENV_VAR = "ARTALIGN_LABEL_SETTINGS"
ORDERS = ("fifo", "random", "uncertain")

# Action -> button label. The hotkey script clicks a button whose text is the label, or the
# label followed by " (" and the key hint, so labels must be unique prefixes of each other's text.
ACTION_LABELS: dict[str, str] = {
    "left": "Left",
    "right": "Right",
    "tie": "Tie",
    "both_bad": "Both bad",
    "skip": "Skip",
    "undo": "Undo last",
    "submit": "Submit ranking",
}

# KeyboardEvent.key values; single characters are matched case-insensitively.
DEFAULT_HOTKEYS: dict[str, tuple[str, ...]] = {
    "left": ("ArrowLeft", "1"),
    "right": ("ArrowRight", "2"),
    "tie": ("t",),
    "both_bad": ("b",),
    "skip": ("s",),
    "undo": ("u",),
    "submit": ("Enter",),
}

_KEY_GLYPHS = {"ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓", " ": "Space"}


def normalize_key(key: str) -> str:
    """The form the browser script compares: single characters lower-cased, names as given."""
    return key.lower() if len(key) == 1 else key


def key_hint(keys: tuple[str, ...]) -> str:
    """How the keys of one action read on its button, e.g. `← / 1`."""
    return " / ".join(_KEY_GLYPHS.get(k, k) for k in keys)


def check_hotkeys(hotkeys: dict[str, tuple[str, ...]], source: str = "hotkeys") -> None:
    """Raise ArtalignError if an action is unknown or one key is bound to two actions."""
    unknown = sorted(set(hotkeys) - set(ACTION_LABELS))
    if unknown:
        raise ArtalignError(f"{source}: unknown action(s) {unknown}; use {sorted(ACTION_LABELS)}")
    owner: dict[str, str] = {}
    for action, keys in hotkeys.items():
        for key in keys:
            if not isinstance(key, str) or not key:
                raise ArtalignError(f"{source}: key {key!r} of {action!r} is not a key name")
            norm = normalize_key(key)
            if norm in owner and owner[norm] != action:
                raise ArtalignError(
                    f"{source}: key {key!r} is bound to both {owner[norm]!r} and {action!r}; "
                    "give each key one action"
                )
            owner[norm] = action


def load_hotkeys(path: str | Path | None) -> dict[str, tuple[str, ...]]:
    """Defaults, with the actions named in a YAML file (`action: key` or `action: [keys]`) replaced.

    An action mapped to an empty list has no hotkey. Key names are KeyboardEvent.key values
    (`ArrowLeft`, `Enter`, `a`, `1`, ...).
    """
    hotkeys = dict(DEFAULT_HOTKEYS)
    if path is None:
        return hotkeys
    path = Path(path)
    if not path.is_file():
        raise ArtalignError(f"hotkey file {path} does not exist; pass a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ArtalignError(f"hotkey file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ArtalignError(f"hotkey file {path} must map actions to keys, e.g. `tie: t`")
    for action, keys in data.items():
        if isinstance(keys, str | int):
            keys = [keys]
        if not isinstance(keys, list):
            raise ArtalignError(f"hotkey file {path}: {action!r} must be a key or a list of keys")
        hotkeys[str(action)] = tuple(str(k) for k in keys)
    check_hotkeys(hotkeys, source=f"hotkey file {path}")
    return hotkeys


@dataclass(frozen=True)
class AppSettings:
    """What one server does; every rater session of the server shares it.

    db: the store's SQLite file. lock_seconds: how long a served task stays locked to its rater.
    gold_rate: share of gold tasks mixed in. order: fifo, random or uncertain (reward-model
    uncertainty first). ratings: show 1-7 sliders for prompt fidelity and quality.
    hotkeys: action -> keys. image_px: display width of each image (upscaled, nearest-neighbour).
    """

    db: str
    lock_seconds: int = 300
    gold_rate: float = 0.1
    order: str = "fifo"
    ratings: bool = False
    hotkeys: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_HOTKEYS))
    image_px: int = 256

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ArtalignError(f"order {self.order!r} is unknown; use one of {', '.join(ORDERS)}")
        if not 0.0 <= self.gold_rate <= 1.0:
            raise ArtalignError(f"gold rate {self.gold_rate} must lie in [0, 1]")
        if self.lock_seconds <= 0:
            raise ArtalignError(f"lock seconds {self.lock_seconds} must be positive")
        if self.image_px < 32:
            raise ArtalignError(f"image size {self.image_px} px is too small; use >= 32")
        check_hotkeys(self.hotkeys)

    def to_env(self) -> dict[str, str]:
        """The environment entry that carries these settings to the Streamlit script."""
        data = asdict(self)
        data["hotkeys"] = {a: list(k) for a, k in self.hotkeys.items()}
        return {ENV_VAR: json.dumps(data)}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> AppSettings:
        """Read the settings `to_env` wrote; ArtalignError if they are missing or malformed."""
        environ = os.environ if environ is None else environ
        raw = environ.get(ENV_VAR)
        if not raw:
            raise ArtalignError(
                f"{ENV_VAR} is not set; start the app with `artalign label serve --db DB`"
            )
        try:
            data = json.loads(raw)
            data["hotkeys"] = {a: tuple(k) for a, k in data.get("hotkeys", {}).items()}
            return cls(**data)
        except (ValueError, TypeError, AttributeError) as e:
            raise ArtalignError(f"{ENV_VAR} holds malformed settings ({e})") from None
