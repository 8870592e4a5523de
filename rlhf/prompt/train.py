"""`artalign prompt train`: supervised rewriting with TRL's SFTTrainer, then GRPO on the images.

Stages (a Promptist-style recipe, Hao et al. 2022, with GRPO in place of PPO):
1. pairs: (short -> rich) captions of the data set's scenes (rlhf.prompt.data);
2. SFT: a causal LM (from scratch, or `init=DIR`) learns to continue "short =>" with the rich
   caption; the loss falls on the completion only. Saved to OUT/sft;
3. GRPO: groups of sampled rewrites of each short prompt are drawn by the generator and scored by
   `RewriteReward` (image reward + relevance - intent loss); saved to OUT/rewriter.
Both stages measure the held-out pairs' short prompts: how often the greedy rewrite keeps every
stated attribute, and how complete it is (states a size and colour for every object, a background
and a style). OUT/metrics.json, OUT/sft_log.jsonl and OUT/grpo_log.jsonl record the runs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models.errors import ArtalignError
from base_models.generator import Generator
from base_models.generator.sd_folder import check_sd_folder
from base_models.io_utils import replace_dir, write_json, write_text
from base_models.oracle.fidelity import parse_prompt
from rlhf.prompt.config import PromptConfig
from rlhf.prompt.data import grpo_rows, load_pairs, sft_rows
from rlhf.prompt.keep import kept_share
from rlhf.prompt.lm import load_lm, new_gpt2, save_lm, train_tokenizer
from rlhf.prompt.reward import RewriteReward
from rlhf.prompt.rewriter import PromptRewriter, write_meta


def _precision_flags(cfg: PromptConfig) -> dict[str, Any]:
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ArtalignError("mixed_precision=fp16 needs a GPU; use no or bf16 on CPU")
    return {
        "bf16": cfg.mixed_precision == "bf16",
        "fp16": cfg.mixed_precision == "fp16",
        "use_cpu": not torch.cuda.is_available(),
    }


def _common_args(cfg: PromptConfig, out: Path) -> dict[str, Any]:
    return {
        "output_dir": str(out),
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 10,
        "seed": cfg.seed,
        "disable_tqdm": True,
        **_precision_flags(cfg),
    }


def _complete(parsed: dict[str, Any]) -> bool:
    objects = parsed.get("objects") or []
    return (
        bool(objects)
        and all(o.get("size") and o.get("colour") and o.get("shape") for o in objects)
        and bool(parsed.get("background") and parsed.get("style"))
    )


def measure(rewriter: PromptRewriter, shorts: list[str]) -> dict[str, float]:
    """How the greedy rewrites of `shorts` keep the user's intent and fill in the rest."""
    rewrites = rewriter.generate(shorts)
    kept = [kept_share(s, r) for s, r in zip(shorts, rewrites, strict=True)]
    return {
        "kept_share": float(np.mean(kept)),
        "kept_all": float(np.mean([k >= 1 - 1e-9 for k in kept])),
        "complete": float(np.mean([_complete(parse_prompt(r)) for r in rewrites])),
    }


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(row) + "\n" for row in history))


def _save(model: Any, tokenizer: Any, cfg: PromptConfig, final: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        save_lm(model, tokenizer, tmp)
        write_meta(tmp, cfg.max_new_tokens)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def initial_model(cfg: PromptConfig, pairs: list[dict[str, str]]) -> tuple[Any, Any]:
    """The LM to start from: `init`, or a fresh GPT-2 with a tokenizer learned on the pairs."""
    if cfg.init:
        return load_lm(cfg.init)
    torch.manual_seed(cfg.seed)
    rows = sft_rows(pairs)
    tokenizer = train_tokenizer((r["prompt"] + r["completion"] for r in rows), cfg.vocab_size)
    n_positions = cfg.max_length + cfg.max_new_tokens  # room for a long prompt and its rewrite
    model = new_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, n_positions)
    return model, tokenizer


def run_sft(
    cfg: PromptConfig, model: Any, tokenizer: Any, pairs: list[dict[str, str]], workdir: Path
) -> list[dict[str, Any]]:
    """One SFTTrainer run over the pairs; returns its log history."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        num_train_epochs=cfg.sft_epochs,
        per_device_train_batch_size=cfg.sft_batch_size,
        learning_rate=cfg.sft_lr,
        lr_scheduler_type="linear",
        warmup_steps=cfg.sft_warmup,
        max_length=cfg.max_length,
        completion_only_loss=True,
        **_common_args(cfg, workdir),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_rows(pairs)),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer.state.log_history


def run_grpo(
    cfg: PromptConfig,
    start: Path,
    tokenizer: Any,
    reward: Any,
    pairs: list[dict[str, str]],
    workdir: Path,
) -> tuple[Any, list[dict[str, Any]]]:
    """`grpo_steps` GRPOTrainer steps on the short prompts of `pairs`, from the model saved in
    `start` (TRL loads the KL reference from the same folder); returns (model, log history)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        max_steps=cfg.grpo_steps,
        learning_rate=cfg.grpo_lr,
        beta=cfg.beta,
        per_device_train_batch_size=cfg.grpo_prompts_per_step * cfg.num_generations,
        num_generations=cfg.num_generations,
        temperature=cfg.temperature,
        max_completion_length=cfg.max_new_tokens,
        disable_dropout=True,  # log-probs of the policy that sampled (e.g. a local GPT-2 init)
        lr_scheduler_type="constant",
        **{**_common_args(cfg, workdir), "logging_steps": 1},
    )
    trainer = GRPOTrainer(
        model=str(start),
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(grpo_rows(pairs)),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer.model, trainer.state.log_history


def _mean_of(history: list[dict[str, Any]], key: str, rows: slice) -> float | None:
    values = [r[key] for r in history if key in r][rows]
    return float(np.mean(values)) if values else None


def _measured(prefix: str, model: Any, tokenizer: Any, held: list[str]) -> dict[str, float]:
    rewriter = PromptRewriter(model, tokenizer, keep_intent=False)
    return {f"{prefix}_{k}": v for k, v in measure(rewriter, held).items()}


def _first_and_last(history: list[dict[str, Any]], steps: int) -> dict[str, float | None]:
    """GRPO's logged reward terms, averaged over the first and the last fifth of the steps."""
    n = max(1, steps // 5)
    out = {}
    for key in ("image", "relevance", "kept_all"):
        out[f"grpo_{key}_first"] = _mean_of(history, f"rewrite/{key}", slice(0, n))
        out[f"grpo_{key}_last"] = _mean_of(history, f"rewrite/{key}", slice(-n, None))
    return out


def training_prompts(
    cfg: PromptConfig,
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """(SFT pairs, held-out pairs, GRPO prompt pairs) of a config: the one place that says
    which prompts a run trains on (benchmarks use it to tell seen prompts from unseen ones)."""
    n_held = max(1, round(cfg.pairs * cfg.heldout_share))
    sft, held = load_pairs(cfg.data, cfg.pairs, cfg.seed, n_held)
    # a world folder gives fresh draws; a pair file, its training rows (never held out)
    grpo = (
        sft[: cfg.grpo_prompts]
        if Path(cfg.data).is_file()
        else load_pairs(cfg.data, cfg.grpo_prompts, cfg.seed + 1)[0]
    )
    return sft, held, grpo


def train_prompt_optimiser(cfg: PromptConfig, out: str | Path) -> dict[str, Any]:
    """Run both stages into `out`; return the metrics (also written to OUT/metrics.json).

    Under `accelerate launch`, every process trains (TRL shards the batches) and draws its
    reward images on its own device; only the main process writes files.
    """
    from accelerate import PartialState

    cfg.validate()
    if cfg.grpo_steps > 0:
        check_sd_folder(cfg.generator)  # a bad --generator fails before SFT, not after
    state = PartialState()
    t0 = time.perf_counter()
    train_pairs, held_pairs, grpo_pairs = training_prompts(cfg)
    held = [p["short"] for p in held_pairs]
    model, tokenizer = initial_model(cfg, train_pairs)  # bad input fails before OUT is touched
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    main = state.is_main_process
    if main:
        cfg.save_yaml(out / "train_config.yaml")
    metrics: dict[str, Any] = {
        "pairs": len(train_pairs),
        "heldout_pairs": len(held_pairs),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    work = Path(tempfile.mkdtemp(prefix=".trainer.", dir=out))
    try:
        if cfg.sft_epochs > 0:
            history = run_sft(cfg, model, tokenizer, train_pairs, work / "sft")
            if main:
                _write_log(out / "sft_log.jsonl", history)
            metrics["sft_loss_last"] = _mean_of(history, "loss", slice(-1, None))
        metrics.update(_measured("sft", model, tokenizer, held))
        if main:
            _save(model, tokenizer, cfg, out / "sft")
        state.wait_for_everyone()  # GRPO loads the SFT model from OUT/sft
        metrics["sft_seconds"] = time.perf_counter() - t0
        if cfg.grpo_steps:
            generator = Generator.from_folder(cfg.generator, device=state.device)
            reward = RewriteReward(cfg, generator)
            model, history = run_grpo(
                cfg, out / "sft", tokenizer, reward, grpo_pairs, work / "grpo"
            )
            if main:
                _write_log(out / "grpo_log.jsonl", history)
            metrics.update({"grpo_steps": cfg.grpo_steps, "research": reward.research})
            metrics.update(_first_and_last(history, cfg.grpo_steps))
            metrics.update(_measured("grpo", model, tokenizer, held))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    metrics["seconds"] = time.perf_counter() - t0
    if main:
        _save(model, tokenizer, cfg, out / "rewriter")
        write_json(out / "metrics.json", metrics)
    return metrics
