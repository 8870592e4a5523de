"""What the online trainers (DDPO, DRaFT) share: opening a run folder, the LoRA policy and its
optimizer, the reward's arguments, and the epoch loop (start or resume, then epoch by epoch with
the guard, the log, the time limit and checkpoints).

A trainer supplies `train(epoch) -> row` (the epoch's figures, `reward_mean` among them) and,
for state of its own (DDPO's per-prompt stat tracker), `extra_state() -> dict`, which is saved in
every checkpoint and handed back by `begin` on resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.generator import Generator
from base_models.generator.lora import lora_config
from base_models.io_utils import write_text
from base_models.train_utils import check_out, make_accelerator
from rlhf.align import checkpoint
from rlhf.align.finite import NonFinite, stop_message
from rlhf.align.guard import Guard
from rlhf.align.processes import any_process
from rlhf.align.run_files import append_log, save_adapters


def open_run(cfg: Any, out: Path, resume: bool) -> Any:
    """Check the run folder and the process count; return the Accelerator."""
    check_out(out, resume)
    if resume and not checkpoint.has_checkpoint(out):
        raise ArtalignError(f"--resume: no checkpoint in {out}; start without --resume")
    accelerator = make_accelerator(cfg.mixed_precision)
    if cfg.prompts_per_epoch % accelerator.num_processes:
        raise ArtalignError(
            f"prompts_per_epoch ({cfg.prompts_per_epoch}) must be a multiple of the "
            f"{accelerator.num_processes} processes"
        )
    return accelerator


def reward_kwargs(cfg: Any, device: str) -> dict[str, Any]:
    """The reward factory's arguments from a trainer config's reward_* fields."""
    kwargs = {"path": cfg.reward_path, "clip": cfg.reward_clip, "oracle": cfg.reward_oracle}
    if cfg.reward == "reward_model":
        kwargs["device"] = device
    return kwargs


def lora_policy(cfg: Any, device: str) -> tuple[Generator, list[torch.nn.Parameter], Any, Any]:
    """The generator with trainable LoRA adapters (new, or cfg.init_lora's) and everything else
    frozen; AdamW on the adapters and a constant schedule (checkpoints save both)."""
    torch.manual_seed(cfg.seed)
    generator = Generator.from_folder(cfg.model, device=device)
    for module in (generator.unet, generator.vae, generator.text_encoder):
        module.requires_grad_(False)
    generator.attach_lora(cfg.init_lora or lora_config(cfg.lora_rank, cfg.lora_alpha))
    params = generator.lora_parameters()
    for p in params:  # a loaded adapter may come back frozen
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return generator, params, optimizer, scheduler


@dataclass
class RunState:
    """What the loop needs besides the model: the run folder and its trainer's objects."""

    out: Path
    cfg: Any  # a trainer config with epochs, guard_every, checkpoint_every, time_limit_min
    generator: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    accelerator: Any
    guard: Guard | None
    extra_state: Callable[[], dict[str, Any]] = field(default=dict)


def begin(run: RunState, resume: bool) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """A fresh run writes train_config.yaml; a resumed one restores adapters, optimizer, RNGs
    and guard from OUT/checkpoint and drops log lines written after it. Returns (first epoch,
    history, the checkpoint's state, where the trainer finds its own `extra_state`)."""
    main = run.accelerator.is_main_process
    if not resume:
        if main:
            run.out.mkdir(parents=True, exist_ok=True)
            run.cfg.save_yaml(run.out / "train_config.yaml")
        return 0, [], {}
    state = checkpoint.load(run.out, run.generator.unet, run.optimizer, run.scheduler)
    history = state["history"]
    if main:  # a kill between a log line and its checkpoint leaves lines to drop
        write_text(run.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    if run.guard is not None and state.get("guard"):
        run.guard.load_state_dict(state["guard"])
    return state["epoch"] + 1, history, state


def run_epochs(
    run: RunState,
    start_epoch: int,
    history: list[dict[str, Any]],
    train: Callable[[int], dict[str, Any]],
) -> dict[str, Any]:
    """Epochs start_epoch.. until cfg.epochs, a guard stop or the time limit; then OUT/lora.

    Each row gets `epoch` and `epoch_s`; the guard checks every guard_every epochs (and after
    the last), keeping the best check's adapters in OUT/best. Returns the history and why the
    loop ended.
    """
    cfg, acc = run.cfg, run.accelerator
    main = acc.is_main_process
    stopped_by_guard = out_of_time = False
    t_run = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        try:
            row = {"epoch": epoch, **train(epoch)}
        except NonFinite as e:
            raise stop_message(e, run.out, f"epoch {epoch}", "epoch") from None
        row["epoch_s"] = time.perf_counter() - t0
        if run.guard is not None and (
            (epoch + 1) % cfg.guard_every == 0 or epoch + 1 == cfg.epochs
        ):
            report = run.guard.check(epoch, row["reward_mean"])
            row["guard"] = report.to_dict()
            if report.is_best:
                save_adapters(run.generator, run.out / "best", acc)
            stopped_by_guard = report.stop
        history.append(row)
        if main:
            append_log(run.out / "log.jsonl", row)
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
            print(
                json.dumps({k: v for k, v in shown.items() if not isinstance(v, dict)}), flush=True
            )
        elapsed_min = (time.perf_counter() - t_run) / 60
        out_of_time = any_process(0 < cfg.time_limit_min < elapsed_min, acc)
        last = epoch + 1 == cfg.epochs or stopped_by_guard or out_of_time
        if (epoch + 1) % cfg.checkpoint_every == 0 or last:
            extra = {
                "epoch": epoch,
                "history": history,
                **run.extra_state(),
                "guard": run.guard.state_dict() if run.guard else None,
            }
            acc.wait_for_everyone()
            if main:
                checkpoint.save(
                    run.out, run.generator.unet, run.optimizer, run.scheduler, epoch, extra
                )
            acc.wait_for_everyone()
        if stopped_by_guard or out_of_time:
            break
    save_adapters(run.generator, run.out / "lora", acc)
    return {
        "history": history,
        "stopped_by_guard": stopped_by_guard,
        "stopped_by_time": out_of_time,
        "train_seconds_this_session": time.perf_counter() - t_run,
    }
