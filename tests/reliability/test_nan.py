"""A reward or a loss that turns NaN mid-run: DDPO, DRaFT and DPO stop with one line naming it,
exit 2, and the last good checkpoint (written before the NaN) stays loadable for --resume.

In-process through `artalign`'s own entry (its error handling), on the tiny random SD folder.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from base_models.cli_main import main
from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
from labeling_app.store import Store
from rlhf.align import ddpo, dpo, draft
from rlhf.align.rewards import make_differentiable_reward, make_reward
from tests.base_models.sd_fixtures import make_tiny_sd_folder

PROMPTS = ["a large red circle", "a small blue square", "a green star", "a yellow heart"]


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("nan")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    return make_tiny_sd_folder(root / "sd"), root / "prompts.txt"


def _nan_from_call(make, n: int):
    """A reward factory whose reward is brightness's until call `n` (from 1), then NaN."""
    calls = [0]

    def factory(name, **kwargs):
        inner = make("brightness", **kwargs)

        def reward_fn(images, prompts, *rest):
            calls[0] += 1
            rewards, info = inner(images, prompts, *rest)
            return (rewards * math.nan if calls[0] >= n else rewards), info

        return reward_fn

    return factory


def _assert_stopped(capsys, out, what: str, at: str, kept: str) -> None:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for words in (what, "NaN", at, f"{out / 'checkpoint'} ({kept}) is kept", "--resume"):
        assert words in lines[0], lines[0]
    assert not (out / "lora").exists()  # no adapters written from NaN weights
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    weights = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert weights and all(bool(torch.isfinite(w).all()) for w in weights.values())
    return state


@pytest.mark.parametrize("trainer", ["ddpo", "draft"])
def test_a_nan_reward_in_epoch_two_stops_the_run_and_keeps_epoch_ones_checkpoint(
    trainer, sd, tmp_path, monkeypatch, capsys
):
    model, prompts = sd
    # micro: DDPO scores once an epoch, DRaFT twice (two optimizer steps): NaN from epoch 1
    if trainer == "ddpo":
        monkeypatch.setattr(ddpo, "make_reward", _nan_from_call(make_reward, 2))
    else:
        monkeypatch.setattr(
            draft, "make_differentiable_reward", _nan_from_call(make_differentiable_reward, 3)
        )
    out = tmp_path / trainer
    argv = ["align", trainer, "--model", model, "--prompts", prompts, "--preset", "micro"]
    argv = [str(a) for a in argv] + ["--out", str(out), "--reward", "brightness"]
    assert main([*argv, "epochs=3", "checkpoint_every=1"]) == 2
    state = _assert_stopped(capsys, out, "the reward", "epoch 1", "epoch 0")
    assert state["epoch"] == 0
    monkeypatch.undo()  # a good reward: the kept checkpoint resumes and finishes the run
    assert main([*argv, "epochs=2", "checkpoint_every=1", "--resume"]) == 0
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]


def test_a_nan_dpo_loss_stops_the_run_and_keeps_the_last_checkpoint(
    sd, tmp_path, monkeypatch, capsys
):
    model, _ = sd
    db = tmp_path / "labels.db"
    with Store(db, create=True) as store:
        batch = make_batch(
            store, PROMPTS, ProceduralSource(size=16), BatchPlan(k=3, overlap=1, seed=0), "b"
        )
        rater = store.add_rater("solo")
        for task in store.tasks(batch):
            store.record_judgment(
                task.task_id, rater, {"choice": "left"}, client_token=f"t{task.task_id}"
            )
    real, calls = dpo.batch_loss, [0]

    def nan_from_step_three(*args, **kwargs):
        calls[0] += 1
        loss, figures = real(*args, **kwargs)
        if calls[0] >= 3:
            loss, figures = loss * math.nan, {**figures, "loss": math.nan}
        return loss, figures

    monkeypatch.setattr(dpo, "batch_loss", nan_from_step_three)
    out = tmp_path / "dpo"
    argv = ["align", "dpo", "--model", str(model), "--db", str(db), "--out", str(out)]
    argv += ["--preset", "micro", "max_steps=4", "checkpoint_every=2", "sample_prompts=0"]
    assert main(argv) == 2
    state = _assert_stopped(capsys, out, "the DPO loss", "step 3", "step 2")
    assert state["step"] == 2
