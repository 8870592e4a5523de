"""Registries of the evaluation harness: metrics, feature extractors and reward loaders by name.

In the manner of lm-evaluation-harness, a metric is a plain function registered with a decorator:

    @register_metric("fid", aspect="quality", higher_is_better=False)
    def fid(ctx: EvalContext, samples: Samples, **params) -> dict[str, Figure]: ...

It returns one or more named Figures (e.g. composition gives one per category). Suites (YAML)
name metrics and their params; `artalign eval run` looks them up here. Feature extractors are
registered the same way: `@register_extractor("clip")` over `factory(ctx, **params) -> nn.Module`
mapping float images (B, 3, H, W) in [0, 1] to features (B, D).

Packages above `evaluation` (rlhf: the reward model) plug in through the `artalign.eval_plugins`
entry-point group: each entry point names a module whose import registers what it provides, so
`evaluation` never imports them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from base_models.errors import ArtalignError

ASPECTS = ("quality", "alignment", "composition", "preference", "bias", "safety", "efficiency")
MetricFn = Callable[..., dict[str, Any]]
# Modules whose import registers evaluation's own metrics, extractors and prompt sets.
BUILTIN_MODULES = (
    "evaluation.features",
    "evaluation.quality",
    "evaluation.alignment",
    "evaluation.composition",
    "evaluation.preference_metrics",
    "evaluation.bias",
    "evaluation.safety",
    "evaluation.efficiency",
    "evaluation.prompt_sets",
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: MetricFn
    aspect: str
    higher_is_better: bool | None
    description: str


_METRICS: dict[str, MetricSpec] = {}
_EXTRACTORS: dict[str, Callable[..., Any]] = {}
_REWARD_LOADERS: dict[str, Callable[..., Any]] = {}
_PROMPT_SETS: dict[str, Callable[..., list[dict[str, Any]]]] = {}
_plugins_loaded = False


def register_metric(
    name: str, aspect: str, higher_is_better: bool | None = True, description: str = ""
) -> Callable[[MetricFn], MetricFn]:
    """Register `fn(ctx, samples, **params) -> {figure name: Figure}` as metric `name`."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect {aspect!r} is not one of {ASPECTS}")

    def wrap(fn: MetricFn) -> MetricFn:
        if name in _METRICS and _METRICS[name].fn is not fn:
            raise ValueError(f"metric {name!r} is registered twice")
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _METRICS[name] = MetricSpec(name, fn, aspect, higher_is_better, doc)
        return fn

    return wrap


def register_extractor(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `factory(ctx, **params) -> nn.Module` as feature extractor `name`."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        _EXTRACTORS[name] = factory
        return factory

    return wrap


def register_reward_loader(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `loader(path, device) -> reward_fn(images, prompts, metadata)` as `name`."""

    def wrap(loader: Callable[..., Any]) -> Callable[..., Any]:
        _REWARD_LOADERS[name] = loader
        return loader

    return wrap


def register_prompt_set(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `factory(**params) -> [item, ...]` as prompt set `name`.

    An item is a dict with at least "prompt"; usually also "category" and "required" (the
    attributes the prompt asks for, as `base_models.oracle.fidelity.parse_prompt` gives them).
    The suite runner adds "set": name to each item.
    """

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        _PROMPT_SETS[name] = factory
        return factory

    return wrap


def load_plugins() -> None:
    """Import evaluation's own metric modules and every `artalign.eval_plugins` entry point."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in BUILTIN_MODULES:  # the built-in metrics, extractors and prompt sets
        import_module(module)
    for ep in entry_points(group="artalign.eval_plugins"):
        ep.load()


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    load_plugins()
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ArtalignError(f"unknown {kind} {name!r}; known: {known}")
    return table[name]


def get_metric(name: str) -> MetricSpec:
    return _lookup(_METRICS, "metric", name)


def get_extractor(name: str) -> Callable[..., Any]:
    return _lookup(_EXTRACTORS, "feature extractor", name)


def get_reward_loader(name: str) -> Callable[..., Any]:
    return _lookup(_REWARD_LOADERS, "reward loader", name)


def get_prompt_set(name: str) -> Callable[..., list[dict[str, Any]]]:
    return _lookup(_PROMPT_SETS, "prompt set", name)


def metric_names() -> list[str]:
    load_plugins()
    return sorted(_METRICS)


def extractor_names() -> list[str]:
    load_plugins()
    return sorted(_EXTRACTORS)
