"""DDPO: the step density, LoRA-only updates, the policy-gradient sign, resume, the guard, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from base_models.cli_main import main
from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.generator import Generator, gaussian_log_prob, lora_config
from rlhf.align.ddpo import (
    EpochSamples,
    advantages_of,
    epoch_prompts,
    rescore_steps,
    sample_epoch,
    train_ddpo,
    train_epoch,
)
from rlhf.align.ddpo_config import DDPOConfig
from rlhf.align.guard import Guard, GuardConfig
from rlhf.align.rewards import make_reward
from rlhf.align.stat_tracker import PerPromptStatTracker
from tests.base_models.sd_fixtures import make_tiny_sd_folder

REPO = Path(__file__).resolve().parents[2]

PROMPTS = ["a large red circle", "a small blue square", "a green star", "a yellow heart"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("ddpo") / "tiny")


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddpo_prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def micro_cfg(sd_folder, prompts_file, **overrides) -> DDPOConfig:
    base = {
        "model": str(sd_folder),
        "prompts": str(prompts_file),
        "reward": "brightness",
        "lr": 1e-2,
        "clip_range": 0.2,
    }
    return load_config(DDPOConfig, "micro", overrides={**base, **overrides})


def default_cfg(sd_folder, prompts_file, **overrides) -> DDPOConfig:
    """The quick preset's hyperparameters (clip range, lr, timestep fraction, inner epochs, LoRA,
    steps, and 4 minibatches per epoch as 64 / 16) at micro size: 16 images in minibatches of 4."""
    base = {
        "model": str(sd_folder),
        "prompts": str(prompts_file),
        "reward": "brightness",
        "prompts_per_epoch": 4,
        "images_per_prompt": 4,
        "train_batch_size": 4,
        "sample_batch_size": 16,
    }
    quick = load_config(DDPOConfig, "quick", overrides={"model": "m", "prompts": "p"})
    assert quick.images_per_epoch // quick.train_batch_size == 4  # the ratio kept below
    return load_config(DDPOConfig, "quick", overrides={**base, **overrides})


def test_ddim_step_is_the_schedulers_step_and_its_density_is_gaussian(sd_folder):
    gen = Generator.from_folder(sd_folder)
    sched = DDIMScheduler.from_config(gen.ddim.scheduler.config)
    steps, eta = 10, 0.7
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    z = torch.randn(2, 4, 8, 8, generator=g)
    embeds = gen.encode_prompts(PROMPTS[:2])
    t = sched.timesteps[3]
    with torch.no_grad():
        out = gen.unet(x, t, encoder_hidden_states=embeds).sample
        expected = sched.step(out, t, x, eta=eta, variance_noise=z).prev_sample
        mean, std = gen.step_distribution(x, t, embeds, steps=steps, guidance=1.0, eta=eta)
    torch.testing.assert_close(mean + std * z, expected, atol=1e-5, rtol=1e-5)
    normal = torch.distributions.Normal(mean, std.expand_as(mean))
    density = normal.log_prob(expected).flatten(1).mean(1)  # per dimension
    torch.testing.assert_close(
        gaussian_log_prob(expected, mean, std), density, rtol=1e-5, atol=1e-3
    )


def test_epoch_prompts_are_a_function_of_seed_and_epoch(sd_folder, prompts_file):
    cfg = micro_cfg(sd_folder, prompts_file, prompts_per_epoch=2, images_per_prompt=3)
    a = epoch_prompts(PROMPTS, cfg, 5)
    assert a == epoch_prompts(PROMPTS, cfg, 5)
    assert a != epoch_prompts(PROMPTS, cfg, 6)
    prompts, seeds = a
    assert len(prompts) == 6 and len(set(seeds)) == 6
    assert prompts[0] == prompts[1] == prompts[2]  # groups of images_per_prompt
    # two processes split the groups; together they make the single-process epoch
    p0, s0 = epoch_prompts(PROMPTS, cfg, 5, rank=0, world=2)
    p1, s1 = epoch_prompts(PROMPTS, cfg, 5, rank=1, world=2)
    assert sorted(s0 + s1) == sorted(seeds) and sorted(p0 + p1) == sorted(prompts)


class _Acc:  # the single-process Accelerator surface train_epoch uses
    num_processes, process_index = 1, 0

    def autocast(self):
        return torch.autocast("cpu", enabled=False)

    def backward(self, loss):
        loss.backward()


def _trajectory_log_prob(gen, traj):
    with torch.no_grad():
        total = torch.zeros(traj.log_probs.shape[0])
        for k in range(traj.log_probs.shape[1]):
            total += gen.step_log_prob(
                traj.latents[:, k],
                traj.latents[:, k + 1],
                traj.timesteps[k],
                traj.prompt_embeds,
                steps=traj.steps,
                guidance=traj.guidance,
                eta=traj.eta,
            )
    return total


def test_one_epoch_changes_only_lora_and_moves_toward_high_advantage(sd_folder, prompts_file):
    cfg = micro_cfg(
        sd_folder,
        prompts_file,
        prompts_per_epoch=2,
        images_per_prompt=4,
        timestep_fraction=1.0,
        train_batch_size=8,
        lr=3e-3,
    )
    gen = Generator.from_folder(sd_folder)
    gen.unet.requires_grad_(False)
    torch.manual_seed(0)
    gen.attach_lora(lora_config(2, 2.0))
    base = {n: p.detach().clone() for n, p in gen.unet.named_parameters() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in gen.unet.named_parameters() if "lora_" in n}
    prompts, seeds = epoch_prompts(PROMPTS, cfg, 0)
    samples = sample_epoch(gen, make_reward("brightness"), prompts, seeds, cfg)
    assert isinstance(samples, EpochSamples) and samples.rewards.shape == (8,)
    adv = (samples.rewards - samples.rewards.mean()) / samples.rewards.std()
    before = _trajectory_log_prob(gen, samples.trajectory)
    opt = torch.optim.AdamW(gen.lora_parameters(), lr=cfg.lr)
    stats = train_epoch(gen, opt, samples, adv, cfg, 0, _Acc())
    assert stats["clipfrac"] == 0.0  # the first pass re-scores the sampled steps: ratio 1
    after = _trajectory_log_prob(gen, samples.trajectory)
    for n, p in gen.unet.named_parameters():
        if "lora_" in n:
            continue
        assert torch.equal(p, base[n]), n
    assert any(not torch.equal(p, lora[n]) for n, p in gen.unet.named_parameters() if n in lora)
    # policy improvement: high-advantage trajectories became more likely than low ones
    assert float(np.dot(adv, (after - before).numpy())) > 0


def _default_epoch(sd_folder, prompts_file, accelerator):
    """One epoch of the default config: the generator, its samples and advantages."""
    cfg = default_cfg(sd_folder, prompts_file)
    gen = Generator.from_folder(sd_folder)
    gen.unet.requires_grad_(False)
    torch.manual_seed(0)
    gen.attach_lora(lora_config(cfg.lora_rank, cfg.lora_alpha))
    prompts, seeds = epoch_prompts(PROMPTS, cfg, 0)
    samples = sample_epoch(
        gen, make_reward("brightness"), prompts, seeds, cfg, accelerator.autocast
    )
    adv = advantages_of(samples, PerPromptStatTracker(cfg.stat_buffer, 2), accelerator)
    return cfg, gen, samples, adv


def test_default_config_takes_a_step_on_every_minibatch(sd_folder, prompts_file):
    # With the log-prob summed over latent dims, the default clip range 1e-4 clipped every
    # minibatch after the first (clipfrac 0, 1, 1, 1): one effective step per epoch.
    cfg, gen, samples, adv = _default_epoch(sd_folder, prompts_file, _Acc())
    before = _trajectory_log_prob(gen, samples.trajectory)
    opt = torch.optim.AdamW(gen.lora_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stats = train_epoch(gen, opt, samples, adv, cfg, 0, _Acc())
    assert stats["minibatches"] == 4
    assert stats["clipfrac_max"] < 0.6, stats
    after = _trajectory_log_prob(gen, samples.trajectory)
    # policy improvement: high-advantage trajectories became more likely than low ones
    assert float(np.dot(adv, (after - before).numpy())) > 0


@pytest.fixture
def bf16_accelerator():
    """A CPU Accelerator with bf16 autocast; Accelerate's global state (one per process, fixed
    by the first Accelerator) is reset before and after."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    reset()
    yield Accelerator(mixed_precision="bf16", cpu=True)
    reset()


def test_bf16_sampling_records_the_log_probs_ppo_recomputes(
    sd_folder, prompts_file, bf16_accelerator
):
    accelerator = bf16_accelerator
    cfg, gen, samples, adv = _default_epoch(sd_folder, prompts_file, accelerator)
    traj = samples.trajectory
    n, steps = traj.log_probs.shape
    g = torch.Generator().manual_seed(0)
    step_perm = torch.stack([torch.randperm(steps, generator=g) for _ in range(n)])
    worst = 0.0
    with torch.no_grad():  # minibatches of training's size, a different step in every row
        for j in range(steps):
            for start in range(0, n, cfg.train_batch_size):
                rows = torch.arange(start, start + cfg.train_batch_size)
                k = step_perm[rows, j]
                log_prob, _, _ = rescore_steps(gen, traj, rows, k, accelerator)
                worst = max(worst, float((log_prob - traj.log_probs[rows, k]).abs().max()))
    assert worst < 1e-5  # below the clip range 1e-4: unchanged weights are never clipped
    opt = torch.optim.AdamW(gen.lora_parameters(), lr=cfg.lr)
    one_batch = dataclasses.replace(cfg, train_batch_size=n)
    assert train_epoch(gen, opt, samples, adv, one_batch, 0, accelerator)["clipfrac"] == 0.0


class _DeviceCheckingAcc(_Acc):
    """Two processes as NCCL sees them: gather refuses a tensor off the process's device."""

    num_processes = 2
    device = torch.device("meta")

    def gather(self, tensor):
        assert tensor.device == self.device, f"gather of a {tensor.device} tensor"
        return torch.tensor([1.0, 2.0, 3.0, 4.0])  # this process's rewards, then the other's


def test_advantages_gather_rewards_on_the_process_device(monkeypatch):
    import rlhf.align.ddpo as ddpo

    monkeypatch.setattr(ddpo, "gather_objects", lambda acc, obj: [["a", "a"], ["b", "b"]])
    samples = EpochSamples(["a", "a"], None, np.array([1.0, 2.0]), {}, 0.0)
    adv = advantages_of(samples, None, _DeviceCheckingAcc())
    all_four = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(adv, ((all_four - 2.5) / (all_four.std() + 1e-6))[:2])


def _lora_state(out):
    from safetensors.torch import load_file

    return load_file(str(out / "lora" / "pytorch_lora_weights.safetensors"))


def test_resume_continues_rather_than_restarting(sd_folder, prompts_file, tmp_path):
    cfg = micro_cfg(sd_folder, prompts_file, epochs=2)
    straight = train_ddpo(cfg, tmp_path / "straight")
    first = micro_cfg(sd_folder, prompts_file, epochs=1)
    train_ddpo(first, tmp_path / "resumed")
    with pytest.raises(ArtalignError, match="--resume"):
        train_ddpo(cfg, tmp_path / "resumed")  # a second run into the same folder is refused
    resumed = train_ddpo(cfg, tmp_path / "resumed", resume=True)
    assert resumed["epochs_run"] == 2 and resumed["last_reward"] == straight["last_reward"]
    a, b = _lora_state(tmp_path / "straight"), _lora_state(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    rows = [json.loads(x) for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    # a line logged after the last checkpoint (a kill in between) is dropped on resume
    log = tmp_path / "resumed" / "log.jsonl"
    log.write_text(log.read_text() + json.dumps({"epoch": 2, "orphan": True}) + "\n")
    cfg3 = micro_cfg(sd_folder, prompts_file, epochs=3)
    train_ddpo(cfg3, tmp_path / "resumed", resume=True)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and "orphan" not in rows[-1]


def test_adapters_load_in_plain_diffusers(sd_folder, prompts_file, tmp_path):
    train_ddpo(micro_cfg(sd_folder, prompts_file, epochs=1), tmp_path / "run")
    for name in ("lora", "checkpoint", "train_config.yaml", "metrics.json", "samples.png"):
        assert (tmp_path / "run" / name).exists(), name
    pipe = StableDiffusionPipeline.from_pretrained(sd_folder)
    pipe.load_lora_weights(tmp_path / "run" / "lora")
    gen = Generator.from_folder(sd_folder)
    gen.attach_lora(tmp_path / "run" / "lora")
    ours = gen.sample(["a green star"], [3], steps=3, guidance=3.0).pixels
    g = torch.Generator().manual_seed(3)
    theirs = pipe(
        "a green star", generator=g, num_inference_steps=3, guidance_scale=3.0, output_type="pt"
    ).images
    torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=0)
    with gen.lora_disabled():
        base = gen.sample(["a green star"], [3], steps=3, guidance=3.0).pixels
    assert not torch.equal(ours, base)  # the adapters do something


class _FakeGuard(Guard):
    """The guard's decision rule with scripted measurements (no sampling)."""

    def __init__(self, cfg, scores):
        self.cfg, self.scripted = cfg, iter(scores)
        self.history, self.best_score, self.best_reward, self.bad_checks = [], None, None, 0

    def _sample(self):
        return None

    def _measure(self, pixels, first=False):
        return {"fidelity": next(self.scripted), "rater_winrate": 0.5}


def test_guard_stops_when_reward_rises_while_guard_falls():
    cfg = GuardConfig(guard_every=1, guard_prompts="x", guard_patience=2, guard_min_delta=0.02)
    guard = _FakeGuard(cfg, [0.70, 0.75, 0.70, 0.60, 0.50])
    reports = [guard.check(i, r) for i, r in enumerate([0.1, 0.2, 0.3, 0.4, 0.5])]
    assert [r.is_best for r in reports] == [True, True, False, False, False]
    assert [r.stop for r in reports] == [False, False, False, True, True]
    # a falling guard with a falling reward is not hacking: no stop
    guard = _FakeGuard(cfg, [0.70, 0.60, 0.50, 0.40])
    assert not any(guard.check(i, r).stop for i, r in enumerate([0.5, 0.4, 0.3, 0.2]))
    copy = _FakeGuard(cfg, [])
    copy.load_state_dict(json.loads(json.dumps(guard.state_dict())))
    assert copy.best_score == guard.best_score and len(copy.history) == 4


def test_guard_in_training_keeps_best_adapters(sd_folder, prompts_file, tmp_path, micro_clip):
    from base_models.oracle import AttributeOracle

    oracle = AttributeOracle(channels=(4, 4, 4), hidden=8).save(tmp_path / "oracle")
    cfg = micro_cfg(
        sd_folder,
        prompts_file,
        epochs=2,
        guard_every=1,
        guard_prompts=str(prompts_file),
        guard_clip=str(micro_clip),
        guard_oracle=str(oracle),
        guard_rater=str(REPO / "configs" / "raters" / "default.yaml"),
    )
    metrics = train_ddpo(cfg, tmp_path / "run")
    assert len(metrics["guard"]) == 2
    for check in metrics["guard"]:
        m = check["metrics"]
        assert {"clip_score", "fid_to_base", "rater_winrate"} <= set(m)
        # the proxy gap per check: the training reward's win-rate over the base minus the rater's
        assert 0.0 <= m["reward_winrate"] <= 1.0
        assert m["proxy_gap"] == pytest.approx(m["reward_winrate"] - m["rater_winrate"])
    assert (tmp_path / "run" / "best" / "pytorch_lora_weights.safetensors").is_file()


def test_cli_runs_and_refuses_bad_input(sd_folder, prompts_file, tmp_path, capsys):
    common = [
        "align",
        "ddpo",
        "--model",
        str(sd_folder),
        "--prompts",
        str(prompts_file),
        "--preset",
        "micro",
    ]
    out = tmp_path / "cli"
    assert main(common + ["--out", str(out), "--reward", "brightness", "epochs=1"]) == 0
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file()
    capsys.readouterr()
    bad = [
        (["--reward", "reward_model"], "reward_path"),
        (["--reward", "nope"], "unknown reward"),
        (["--reward", "brightness", "eta=0"], "eta"),
        (["--reward", "brightness", "--resume"], "no checkpoint"),
    ]
    for extra, message in bad:
        code = main(common + ["--out", str(tmp_path / "bad")] + extra)
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "bad" / "lora").exists()
