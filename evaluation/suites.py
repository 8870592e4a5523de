"""Evaluation suites: declarative YAML files naming prompt sets, metrics and sampling settings.

A suite is data, not code (in the manner of lm-evaluation-harness's task YAMLs):

    name: quick
    description: Base-vs-aligned check on the embedded default.
    sampling: {steps: 20, guidance: 3.0, eta: 0.0, seeds_per_prompt: 4, batch_size: 64}
    prompt_sets:                 # registered prompt set -> its params
      composition: {n_per_category: 20, seed: 5}
    metrics:                     # registered metric -> its params
      fid: {on: composition}

Each entry's key names a registered prompt set or metric. To use one twice, give the entry its
own key and name the registered one with `set:` (prompt sets) or `metric:` (metrics), e.g.
`clip_neutral: {metric: clip_score, on: neutral}`. Bundled suites live in `evaluation/suites/`;
`load_suite` takes a bundled name or a path to a YAML file. A metric's `on:` names one of the
suite's prompt sets (or a list of them, for metrics that read several). Suites are read with
YAML 1.2 booleans (only true/false), so the key `on:` stays "on" rather than becoming `True`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import yaml

from base_models.config import BaseConfig, hfield, load_config
from base_models.errors import ArtalignError
from evaluation.registry import get_metric, get_prompt_set

SUITES_DIR = Path(__file__).parent / "suites"
_BOOL = "tag:yaml.org,2002:bool"


class _SuiteLoader(yaml.SafeLoader):
    """YAML 1.2 booleans (true/false only): `on: composition` keeps its key "on"."""


_SuiteLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SuiteLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
SUITE_KEYS = ("name", "description", "sampling", "prompt_sets", "metrics")


@dataclasses.dataclass
class SamplingConfig(BaseConfig):
    """How the runner samples each suite item: the same settings for the model and the baseline."""

    steps: int = hfield(20, "DDIM steps per image.")
    guidance: float = hfield(3.0, "Classifier-free guidance scale (1 = off).")
    eta: float = hfield(0.0, "DDIM eta: 0 is deterministic, 1 DDPM-like.")
    seeds_per_prompt: int = hfield(4, "Images per suite item; image k of item i has seed S+i*K+k.")
    batch_size: int = hfield(64, "Images per UNet batch.")
    height: int | None = hfield(None, "Image height in pixels (default: the model's size).")
    width: int | None = hfield(None, "Image width in pixels (default: the model's size).")
    dtype: str = hfield("float32", "Sampling precision: float32, float16 or bfloat16.")

    def validate(self, source: str) -> SamplingConfig:
        if self.seeds_per_prompt < 1:
            raise ArtalignError(f"{source}: sampling.seeds_per_prompt must be >= 1")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ArtalignError(f"{source}: sampling.dtype must be float32, float16 or bfloat16")
        # lazy: torch, kept out of `artalign --help`
        from base_models.generator import check_sampling_args

        try:
            check_sampling_args(1, self.steps, self.guidance, self.eta, self.batch_size, 1000)
        except ArtalignError as e:
            raise ArtalignError(f"{source}: sampling: {e}") from None
        return self


@dataclasses.dataclass
class Entry:
    """One prompt set or metric of a suite: its key in the suite, what it names, its params."""

    key: str
    target: str  # the registered name (= key unless the entry says `set:` / `metric:`)
    params: dict[str, Any]


@dataclasses.dataclass
class Suite:
    """A loaded, validated suite."""

    name: str
    description: str
    sampling: SamplingConfig
    prompt_sets: list[Entry]
    metrics: list[Entry]
    source: str = ""  # the file it came from

    def to_dict(self) -> dict[str, Any]:
        """The suite as written in metrics.json's settings (and re-loadable as YAML)."""

        def entries(items: list[Entry], alias: str) -> dict[str, Any]:
            return {
                e.key: ({alias: e.target} if e.target != e.key else {}) | e.params for e in items
            }

        return {
            "name": self.name,
            "description": self.description,
            "sampling": self.sampling.to_dict(),
            "prompt_sets": entries(self.prompt_sets, "set"),
            "metrics": entries(self.metrics, "metric"),
            "source": self.source,
        }


def suite_names() -> list[str]:
    """The bundled suites' names."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def _entries(raw: Any, section: str, alias: str, source: str) -> list[Entry]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ArtalignError(f"{source}: '{section}' must be a mapping of name: {{params}}")
    out = []
    for key, params in raw.items():
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ArtalignError(
                f"{source}: {section}.{key} must be a mapping of params (or {{}}), got {params!r}"
            )
        bad = [k for k in params if not isinstance(k, str)]
        if bad:
            raise ArtalignError(f"{source}: {section}.{key}: param names must be text, got {bad}")
        params = dict(params)
        target = params.pop(alias, key)
        out.append(Entry(str(key), str(target), params))
    return out


def parse_suite(raw: Any, source: str) -> Suite:
    """Build a Suite from parsed YAML, checking its keys and sampling settings."""
    if not isinstance(raw, dict):
        raise ArtalignError(f"{source}: a suite must be a YAML mapping with keys {SUITE_KEYS}")
    unknown = sorted(set(raw) - set(SUITE_KEYS))
    if unknown:
        raise ArtalignError(
            f"{source}: unknown suite key(s) {', '.join(unknown)}; valid: {', '.join(SUITE_KEYS)}"
        )
    sampling_raw = raw.get("sampling") or {}
    if not isinstance(sampling_raw, dict):
        raise ArtalignError(f"{source}: 'sampling' must be a mapping (steps, guidance, ...)")
    try:
        sampling = load_config(SamplingConfig, overrides=sampling_raw)
    except ArtalignError as e:
        raise ArtalignError(f"{source}: sampling: {e}") from None
    suite = Suite(
        name=str(raw.get("name") or Path(source).stem),
        description=str(raw.get("description") or ""),
        sampling=sampling.validate(source),
        prompt_sets=_entries(raw.get("prompt_sets"), "prompt_sets", "set", source),
        metrics=_entries(raw.get("metrics"), "metrics", "metric", source),
        source=source,
    )
    if not suite.prompt_sets:
        raise ArtalignError(f"{source}: the suite names no prompt_sets; add at least one")
    if not suite.metrics:
        raise ArtalignError(f"{source}: the suite names no metrics; add at least one")
    return suite


def check_registered(suite: Suite) -> None:
    """Every prompt set and metric the suite names is registered; `on:` names one of its sets."""
    keys = {e.key for e in suite.prompt_sets}
    for e in suite.prompt_sets:
        try:
            get_prompt_set(e.target)
        except ArtalignError as err:
            raise ArtalignError(f"{suite.source}: prompt_sets.{e.key}: {err}") from None
    for e in suite.metrics:
        try:
            get_metric(e.target)
        except ArtalignError as err:
            raise ArtalignError(f"{suite.source}: metrics.{e.key}: {err}") from None
        _check_params(
            get_metric(e.target).fn, (None, None), e.params, f"{suite.source}: metrics.{e.key}"
        )
        on = e.params.get("on")
        for name in [on] if isinstance(on, str) else on or []:  # a set, or a list of sets
            if name not in keys and name != "all":
                raise ArtalignError(
                    f"{suite.source}: metrics.{e.key}: on: {name!r} is not one of the suite's "
                    f"prompt sets ({', '.join(sorted(keys))})"
                )


def _check_params(fn: Any, args: tuple, params: dict[str, Any], where: str) -> None:
    """Refuse params the registered function does not take, before any work is done."""
    try:
        inspect.signature(fn).bind(*args, **params)
    except TypeError as e:
        raise ArtalignError(f"{where}: bad params ({e})") from None
    except ValueError:  # no signature to read (a builtin): let the call itself decide
        pass


def load_suite(name_or_path: str | Path, check: bool = True) -> Suite:
    """A bundled suite by name (`quick`, `micro`, `sd`, ...) or a suite YAML file by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ArtalignError(
                f"unknown suite {str(name_or_path)!r}; bundled: {', '.join(suite_names())} "
                "(or pass a suite YAML file)"
            )
    if not path.is_file():
        raise ArtalignError(f"suite file {path} does not exist; pass a YAML file or a suite name")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SuiteLoader)  # noqa: S506
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ArtalignError(f"suite file {path} is not valid YAML: {e}") from None
    suite = parse_suite(raw, str(path))
    if check:
        check_registered(suite)
    return suite


def build_items(suite: Suite) -> list[dict[str, Any]]:
    """The suite's items, prompt set by prompt set; each item gets "set": its entry's key."""
    items: list[dict[str, Any]] = []
    for e in suite.prompt_sets:
        factory = get_prompt_set(e.target)
        _check_params(factory, (), e.params, f"{suite.source}: prompt_sets.{e.key}")
        made = factory(**e.params)
        if not made:
            raise ArtalignError(f"{suite.source}: prompt set {e.key!r} made no prompts")
        for item in made:
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise ArtalignError(f"prompt set {e.target!r} made an item without a prompt")
            items.append({**item, "set": e.key})
    return items
