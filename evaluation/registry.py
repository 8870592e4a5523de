"""The evaluation harness's plug-in tables: metrics, feature extractors, prompt sets, rewards,
safety classifiers — each a `base_models.registry.Registry`.

In the manner of lm-evaluation-harness, a metric is a plain function registered with a decorator:

    @register_metric("fid", aspect="quality", higher_is_better=False)
    def fid(ctx: EvalContext, samples: Samples, **params) -> dict[str, Figure]: ...

It returns one or more named Figures (e.g. composition gives one per category). Suites (YAML)
name metrics and their params; `artalign eval run` looks them up here. Feature extractors are
registered the same way: `@register_extractor("clip")` over `factory(ctx, **params) -> nn.Module`
mapping float images (B, 3, H, W) in [0, 1] to features (B, D).

Rewards (`REWARDS`) are `factory(**kwargs) -> reward_fn(images, prompts, metadata) -> (rewards,
info)`, shared by the evaluation harness and the alignment trainers. Packages above `evaluation`
(rlhf: the learned reward model and the trainers' rewards) plug in through the
`artalign.eval_plugins` entry-point group: each entry point names a module whose import
registers what it provides, so `evaluation` never imports them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from base_models.registry import Entry, Registry

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
    "evaluation.safety.metrics",
    "evaluation.efficiency",
    "evaluation.prompt_sets",
)
PLUGIN_GROUP = "artalign.eval_plugins"


def _override_hint(key: str) -> str:
    return f"reward_{key}=VALUE (a KEY=VALUE override)"


METRICS = Registry("metric", BUILTIN_MODULES, group=PLUGIN_GROUP)
EXTRACTORS = Registry("feature extractor", BUILTIN_MODULES, group=PLUGIN_GROUP)
PROMPT_SETS = Registry("prompt set", BUILTIN_MODULES, group=PLUGIN_GROUP)
# rewards come from the plug-ins (rlhf); the built-in metric modules need not load for them
REWARDS = Registry("reward", group=PLUGIN_GROUP, hint=_override_hint)
CLASSIFIERS = Registry("safety classifier", ("evaluation.safety.adapters",))


def register_metric(
    name: str, aspect: str, higher_is_better: bool | None = True, description: str = ""
) -> Callable[[MetricFn], MetricFn]:
    """Register `fn(ctx, samples, **params) -> {figure name: Figure}` as metric `name`."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect {aspect!r} is not one of {ASPECTS}")

    def wrap(fn: MetricFn) -> MetricFn:
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        METRICS.add(
            name, fn, fn=fn, aspect=aspect, higher_is_better=higher_is_better, description=doc
        )
        return fn

    return wrap


def register_extractor(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `factory(ctx, **params) -> nn.Module` as feature extractor `name`."""
    return EXTRACTORS.register(name)


def register_reward(
    name: str, research: bool = False, needs: tuple[str, ...] = (), differentiable: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `factory(**kwargs) -> reward_fn(images, prompts, metadata)` as reward `name`.

    research: the reward optimises an evaluation instrument (runs that use it are labelled).
    needs: keyword arguments the factory cannot do without (e.g. "path").
    differentiable: the factory takes `differentiable=True` and then returns a reward_fn whose
    rewards keep their autograd graph back to the images (reward backpropagation, DRaFT).
    """
    return REWARDS.register(name, needs=needs, research=research, differentiable=differentiable)


def register_prompt_set(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `factory(**params) -> [item, ...]` as prompt set `name`.

    An item is a dict with at least "prompt"; usually also "category" and "required" (the
    attributes the prompt asks for, as `base_models.oracle.fidelity.parse_prompt` gives them).
    The suite runner adds "set": name to each item.
    """
    return PROMPT_SETS.register(name)


def register_classifier(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `factory(**params) -> classifier` (with probabilities() and flags())."""
    return CLASSIFIERS.register(name)


def get_metric(name: str) -> Entry:
    """The metric's entry: `.fn`, `.aspect`, `.higher_is_better`, `.description`."""
    return METRICS.entry(name)


def get_extractor(name: str) -> Callable[..., Any]:
    return EXTRACTORS.get(name)


def get_prompt_set(name: str) -> Callable[..., list[dict[str, Any]]]:
    return PROMPT_SETS.get(name)


def metric_names() -> list[str]:
    return METRICS.names()


def extractor_names() -> list[str]:
    return EXTRACTORS.names()
