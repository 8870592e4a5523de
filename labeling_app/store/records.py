"""What the store hands out: errors, raters, tasks, judgments, images and batches.

Plain frozen dataclasses, so the app, the simulated raters and the exporters never see a
database row or a password hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError


class StoreError(ArtalignError):
    """A request the store refuses: bad answer, unknown id, crafted path, duplicate name, ..."""


class AuthError(ArtalignError):
    """Login, invite or access-control failure (wrong password, locked account, not allowed)."""


ROLES = ("rater", "admin")
KINDS = ("pair", "rank")
INSTRUCTIONS_KEY = "instructions"  # where a batch's rater instructions sit in its settings
MAX_INSTRUCTIONS = 2000  # characters


@dataclass(frozen=True)
class Rater:
    """A person (or simulated rater) who judges tasks; admins may read everything."""

    id: int
    name: str
    role: str = "rater"
    active: bool = True
    failed_logins: int = 0
    locked_until: float | None = None
    has_password: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# The file-system admin: the CLI, exporters and trainers, which hold the database file anyway.
SYSTEM = Rater(id=0, name="<system>", role="admin")


@dataclass(frozen=True)
class Task:
    """One unit of work: a pair (A/B) or a k-way ranking of images for one prompt.

    From `next_task` it carries the rater's `assignment_id` and `gold` is always None, so a
    rater cannot tell a gold question from another; `Store.tasks()` fills in the gold answer.
    """

    assignment_id: int | None
    task_id: int
    kind: str
    prompt: str
    image_ids: list[int]
    image_paths: list[Path]
    gold: dict[str, Any] | None = None
    batch_id: int = 0
    prompt_id: int = 0
    overlap: int = 1
    priority: float = 0.0
    done: int = 0  # live (not undone) judgments so far
    lock_expires_at: float | None = None


@dataclass(frozen=True)
class Judgment:
    """One rater's answer to one task (see docs/labeling_store.md for the answer layout)."""

    id: int
    task_id: int
    rater_id: int
    kind: str
    prompt: str
    image_ids: list[int]
    answer: dict[str, Any]
    created_at: float
    seconds: float | None
    batch_id: int = 0
    prompt_id: int = 0
    rater_name: str = ""
    assignment_id: int = 0
    client_token: str = ""
    undone: bool = False
    gold: dict[str, Any] | None = None  # the task's gold answer (admins only), else None


@dataclass(frozen=True)
class ImageRecord:
    """An image row: where its file is and how it was made."""

    id: int
    sha256: str
    path: Path  # absolute, checked to lie inside the images folder
    prompt_id: int | None
    seed: int | None
    model: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    created_at: float = 0.0


@dataclass(frozen=True)
class Batch:
    """A set of tasks made together (one `label batch` run or one import)."""

    id: int
    name: str
    settings: dict[str, Any]
    created_at: float
    done: bool

    @property
    def instructions(self) -> str:
        """What the admin wrote for this batch's raters ("" if nothing; see
        `Store.set_batch_instructions`)."""
        return str(self.settings.get(INSTRUCTIONS_KEY) or "")
