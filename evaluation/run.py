"""The suite runner behind `artalign eval run`: sample, score, write metrics.json and the report.

One run:
1. load the suite and build its items (prompt sets, each item tagged with "set");
2. sample every item `seeds_per_prompt` times with `base_models.generator.Generator`, image k of
   item i with seed S + i*K + k, for the model and then (when given) the baseline: the seeds are
   shared, so image j of both models is a matched pair (same prompt, same initial noise);
3. save the images to OUT/images/{model,baseline}/NNNN.png (prompt, seed and settings in PNG
   text chunks) and OUT/manifest.jsonl (one line per pair);
4. compute each metric of the suite for each model; preference metrics (win-rates) once, with
   the baseline's samples as `ctx.other`. A metric that raises ArtalignError (an instrument it
   needs is missing, too few samples, ...) is recorded as {"skipped": reason} unless `strict`;
5. write OUT/metrics.json (every figure with n and its CI, plus the exact settings) and
   OUT/report.html.
The folder is built beside OUT and renamed into place at the end, so OUT is never half written.
"""

from __future__ import annotations

import gc
import json
import math
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.generator import Generator
from base_models.imaging import png_info
from base_models.io_utils import missing_path_error, replace_dir, write_json
from evaluation.context import EvalContext, Samples
from evaluation.preference_metrics import reward_distributions
from evaluation.registry import get_metric
from evaluation.report import write_report
from evaluation.stats import Figure
from evaluation.suites import Suite, build_items, load_suite

LABELS = ("model", "baseline")
VERSIONED = ("artalign", "torch", "diffusers", "transformers", "torchmetrics", "open_clip_torch")
Log = Callable[[str], None]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["torch"] = torch.__version__  # with its build tag (e.g. +cu130)
    out["cuda"] = torch.version.cuda or "none"
    return out


def job_seeds(n_items: int, per_item: int, first_seed: int) -> list[tuple[int, int]]:
    """(item index, seed) of every image: image k of item i has seed first + i*K + k."""
    return [(i, first_seed + i * per_item + k) for i in range(n_items) for k in range(per_item)]


def sample_model(
    path: str | Path,
    lora: str | Path | None,
    items: list[dict[str, Any]],
    jobs: list[tuple[int, int]],
    suite: Suite,
    device: str,
    image_dir: Path,
    label: str,
    log: Log,
) -> Samples:
    """Sample every job with one model; save the PNGs; return its Samples (timed sampling)."""
    s = suite.sampling
    gen = Generator.from_folder(path, device=device, dtype=getattr(torch, s.dtype))
    if lora is not None:
        gen.attach_lora(lora)
    prompts = [items[i]["prompt"] for i, _ in jobs]
    seeds = [seed for _, seed in jobs]
    pixels, seconds = [], 0.0
    image_dir.mkdir(parents=True)
    settings = {"steps": s.steps, "guidance": s.guidance, "eta": s.eta, "dtype": s.dtype}
    step = max(s.batch_size, 1)
    for start in range(0, len(jobs), step):
        t0 = time.perf_counter()
        out = gen.sample(
            prompts[start : start + step],
            seeds[start : start + step],
            steps=s.steps,
            guidance=s.guidance,
            eta=s.eta,
            batch_size=s.batch_size,
            height=s.height,
            width=s.width,
        )
        seconds += time.perf_counter() - t0
        for j, image in enumerate(out.images, start):
            meta = {
                "prompt": prompts[j],
                "seed": seeds[j],
                "model": str(path),
                "lora": str(lora) if lora else None,
                "set": items[jobs[j][0]]["set"],
                "settings": settings,
            }
            image.save(image_dir / f"{j:04d}.png", format="PNG", pnginfo=png_info(meta))
        pixels.append(out.pixels)
        log(f"  {label}: {min(start + step, len(jobs))}/{len(jobs)} images")
    del gen
    if str(device).startswith("cuda"):  # hand the GPU memory back before the next model loads
        gc.collect()
        torch.cuda.empty_cache()
    return Samples(torch.cat(pixels), prompts, seeds, [items[i] for i, _ in jobs], label, seconds)


def _clean(x: Any) -> Any:
    """JSON-safe figures: NaN and infinities become null (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _figures(result: Any, metric: str) -> dict[str, Any]:
    if not isinstance(result, dict) or not result:
        raise TypeError(f"metric {metric!r} must return a non-empty dict of Figures")
    out = {}
    for name, fig in result.items():
        if not isinstance(fig, Figure):
            raise TypeError(f"metric {metric!r} returned {type(fig).__name__} for {name!r}")
        out[str(name)] = _clean(fig.to_dict())
    return out


def _compute(
    key: str,
    fn: Callable,
    ctx: EvalContext,
    samples: Samples,
    params: dict,
    strict: bool,
    log: Log,
    who: str,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        result = _figures(fn(ctx, samples, **params), key)
    except ArtalignError as e:
        if strict:
            raise ArtalignError(f"metric {key} ({who}): {e}") from None
        log(f"  {key} ({who}): skipped: {e}")
        return {"skipped": str(e)}
    log(f"  {key} ({who}): {len(result)} figure(s) in {time.perf_counter() - t0:.1f}s")
    return result


def compute_metrics(
    suite: Suite, ctx: EvalContext, samples: dict[str, Samples], strict: bool, log: Log
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """(models, comparison, seconds per metric) as metrics.json stores them."""
    models: dict[str, dict[str, Any]] = {label: {} for label in samples}
    comparison: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for entry in suite.metrics:
        spec = get_metric(entry.target)
        t0 = time.perf_counter()
        if spec.aspect == "preference":  # model vs baseline: computed once
            if "baseline" not in samples:
                reason = f"{entry.key} needs --baseline: a second model to compare with"
                log(f"  {entry.key}: skipped: {reason}")
                result = {"skipped": reason}
            else:
                ctx.other = samples["baseline"]
                result = _compute(
                    entry.key,
                    spec.fn,
                    ctx,
                    samples["model"],
                    entry.params,
                    strict,
                    log,
                    "model vs baseline",
                )
                ctx.other = None
            comparison.setdefault(spec.aspect, {})[entry.key] = result
        else:
            for label, s in samples.items():
                result = _compute(entry.key, spec.fn, ctx, s, entry.params, strict, log, label)
                models[label].setdefault(spec.aspect, {})[entry.key] = result
        seconds[entry.key] = round(time.perf_counter() - t0, 3)
    return models, comparison, seconds


def _check_inputs(paths: dict[str, Any]) -> None:
    for flag, value in paths.items():
        if value is not None and not Path(value).exists():
            raise missing_path_error(value, f"{flag} {value}")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ArtalignError(f"--out {out} is not empty; pass --overwrite to replace it")


def _manifest(jobs: list[tuple[int, int]], items: list[dict[str, Any]], labels: list[str]) -> str:
    lines = []
    for j, (i, seed) in enumerate(jobs):
        item = items[i]
        row = {
            "index": j,
            "item": i,
            "prompt": item["prompt"],
            "seed": seed,
            "set": item["set"],
            "category": item.get("category"),
        }
        row |= {f"{label}_file": f"images/{label}/{j:04d}.png" for label in labels}
        lines.append(json.dumps(row) + "\n")
    return "".join(lines)


def run_eval(
    model: str | Path,
    suite: str | Path | Suite,
    out: str | Path,
    lora: str | Path | None = None,
    baseline: str | Path | None = None,
    baseline_lora: str | Path | None = None,
    *,
    strict: bool = False,
    overwrite: bool = False,
    safety_checker: str | Path | None = None,
    extractor_weights: str | Path | None = None,
    log: Log | None = None,
    **ctx_options: Any,
) -> dict[str, Any]:
    """Evaluate `model` (vs `baseline`) on `suite`; write OUT/metrics.json and OUT/report.html.

    `ctx_options` are EvalContext fields: oracle_path, clip_path, reward_path, rater_profile_path,
    reference_path, cache_dir, extractor, device, seed (first sampling seed and bootstrap seed),
    n_boot. `safety_checker` (a saved concept checker) is what the safety metrics read from the
    settings; `extractor_weights` (a local weights file, e.g. Inception's as safetensors) is passed
    to the feature extractor of every quality metric. `strict` turns a metric's ArtalignError
    into the run's error; `overwrite` lets the run replace a non-empty OUT. Returns the
    metrics.json content.
    """
    log = log or (lambda _msg: None)
    out = Path(out)
    ctx_options.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
    ctx = EvalContext(**ctx_options)
    _check_inputs(
        {
            "--model": model,
            "--lora": lora,
            "--baseline": baseline,
            "--baseline-lora": baseline_lora,
            "--oracle": ctx.oracle_path,
            "--clip": ctx.clip_path,
            "--reward": ctx.reward_path,
            "--rater": ctx.rater_profile_path,
            "--reference": ctx.reference_path,
            "--safety-checker": safety_checker,
            "--extractor-weights": extractor_weights,
        }
    )
    if baseline_lora is not None and baseline is None:
        raise ArtalignError("--baseline-lora needs --baseline (the model it attaches to)")
    _check_out(out, overwrite)
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    items = build_items(suite)
    jobs = job_seeds(len(items), suite.sampling.seeds_per_prompt, ctx.seed)
    models = {"model": (model, lora)} | (
        {"baseline": (baseline, baseline_lora)} if baseline else {}
    )
    settings = {
        "suite": suite.to_dict(),
        "model": str(model),
        "lora": str(lora) if lora else None,
        "baseline": str(baseline) if baseline else None,
        "baseline_lora": str(baseline_lora) if baseline_lora else None,
        "seeds": {
            "first": ctx.seed,
            "per_item": suite.sampling.seeds_per_prompt,
            "rule": "image k of item i: first + i*per_item + k (shared by both models)",
            "n_items": len(items),
            "n_images": len(jobs),
        },
        "sampling": suite.sampling.to_dict(),
        "instruments": {
            k: (str(v) if v is not None else None)
            for k, v in (
                ("oracle", ctx.oracle_path),
                ("clip", ctx.clip_path),
                ("reward", ctx.reward_path),
                ("rater", ctx.rater_profile_path),
                ("reference", ctx.reference_path),
                ("cache_dir", ctx.cache_dir),
            )
        }
        | {"extractor": ctx.extractor},
        "safety_checker": str(safety_checker) if safety_checker else None,
        "extractor_params": {"weights": str(extractor_weights)} if extractor_weights else {},
        "device": ctx.device,
        "n_boot": ctx.n_boot,
        "strict": strict,
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    ctx.settings = settings
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        log(f"suite {suite.name}: {len(items)} items x {suite.sampling.seeds_per_prompt} seeds")
        samples = {}
        for label, (path, adapter) in models.items():
            samples[label] = sample_model(
                path, adapter, items, jobs, suite, ctx.device, tmp / "images" / label, label, log
            )
        (tmp / "manifest.jsonl").write_text(_manifest(jobs, items, list(models)), "utf-8")
        log("metrics:")
        figures, comparison, metric_seconds = compute_metrics(suite, ctx, samples, strict, log)

        result = {
            "settings": settings,
            "models": figures,
            "comparison": comparison,
            "distributions": {"reward": reward_distributions(ctx)},
            "timing": {
                "sampling_s": {k: round(s.seconds, 3) for k, s in samples.items()},
                "metrics_s": metric_seconds,
            },
        }
        write_json(tmp / "metrics.json", _clean(result))
        write_report(tmp)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return result
