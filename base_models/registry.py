"""One generic name → entry table, for every plug-in point of the project.

As in lm-evaluation-harness, a component is a plain function (or class) registered under a name
with a decorator; a lookup by name gives it back. The evaluation metrics, feature extractors and
prompt sets, the safety classifiers and the alignment rewards are all `Registry` instances.

- Lazy entry points: a registry names the modules whose import registers its built-in entries,
  and optionally an entry-point group through which packages installed above it plug in. Both
  load on the first lookup, so importing a registry costs nothing.
- Collisions: registering a different object under a taken name is a programming error
  (ValueError). Registering the same definition again (a module re-imported) is allowed.
- `needs=`: keyword arguments an entry cannot be built without; `build` names the missing ones
  with the hint of how a user sets them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from base_models.errors import ArtalignError


@dataclass(frozen=True)
class Entry:
    """A registered object with the facts registered beside it (`meta`, read as attributes)."""

    name: str
    obj: Any
    needs: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        if key == "meta":  # not yet set (copy, unpickle): no recursion
            raise AttributeError(key)
        try:
            return self.meta[key]
        except KeyError:
            raise AttributeError(f"{self.name!r} has no {key!r}") from None


def _origin(obj: Any) -> tuple[str, str] | None:
    """Where `obj` was defined, so a re-imported module's fresh function counts as the same."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return (module, qualname) if module and qualname else None


class Registry:
    """Name → `Entry`. `kind` names the entries in messages ("metric", "reward", ...).

    `modules` are imported, and the `group` entry points loaded, on the first lookup.
    `hint(missing_key)` says how a user supplies a missing `needs` key (a CLI override, say).
    """

    def __init__(
        self,
        kind: str,
        modules: Iterable[str] = (),
        group: str | None = None,
        hint: Callable[[str], str] | None = None,
    ) -> None:
        self.kind = kind
        self.modules = tuple(modules)
        self.group = group
        self.hint = hint
        self._entries: dict[str, Entry] = {}
        self._loaded = not self.modules and group is None

    # ------------------------------------------------------------------ registering
    def add(self, name: str, obj: Any, needs: Iterable[str] = (), **meta: Any) -> Any:
        """Register `obj` as `name`, with `meta` facts read back as the entry's attributes."""
        where = _origin(obj)
        old = self._entries.get(name)
        if (
            old is not None
            and old.obj is not obj
            and (where is None or old.meta["_origin"] != where)
        ):
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, tuple(needs), {**meta, "_origin": where})
        return obj

    def register(self, name: str, needs: Iterable[str] = (), **meta: Any) -> Callable[[Any], Any]:
        """Decorator form of `add`: `@registry.register("name", needs=("path",))`."""

        def wrap(obj: Any) -> Any:
            return self.add(name, obj, needs=needs, **meta)

        return wrap

    # ------------------------------------------------------------------ looking up
    def load(self) -> None:
        """Import the built-in modules and the entry-point group (once)."""
        if self._loaded:
            return
        self._loaded = True
        for module in self.modules:
            import_module(module)
        if self.group:
            for ep in entry_points(group=self.group):
                ep.load()

    def entry(self, name: str) -> Entry:
        self.load()
        if name not in self._entries:
            known = ", ".join(self.names()) or "none"
            raise ArtalignError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call entry `name` with `kwargs` (None values dropped), after checking its `needs`."""
        entry = self.entry(name)
        missing = [k for k in entry.needs if kwargs.get(k) in (None, "")]
        if missing:
            how = f"; set {self.hint(missing[0])}" if self.hint else ""
            raise ArtalignError(f"{self.kind} {name!r} needs {', '.join(missing)}{how}")
        return entry.obj(**{k: v for k, v in kwargs.items() if v is not None})

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries
