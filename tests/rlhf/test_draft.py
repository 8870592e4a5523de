"""Reward backpropagation (DRaFT-K, AlignProp): the differentiable sampler, one step's effect,
the gradient against finite differences, resume, memory, differentiable rewards, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from base_models.cli_main import main
from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.generator import Generator, lora_config
from base_models.generator.backprop import sample_with_grad
from rlhf.align.ddpo import epoch_prompts
from rlhf.align.draft import train_draft, train_epoch, train_step
from rlhf.align.draft_config import DraftConfig
from rlhf.align.rewards import differentiable_rewards, make_differentiable_reward
from rlhf.reward.model import build_reward_model
from rlhf.reward.score import make_reward_fn
from tests.base_models.sd_fixtures import make_tiny_sd_folder

PROMPTS = ["a large red circle", "a small blue square", "a green star", "a yellow heart"]


class _Acc:  # the single-process Accelerator surface the trainer uses
    num_processes, process_index = 1, 0

    def autocast(self):
        return torch.autocast("cpu", enabled=False)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("draft") / "tiny")


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("draft_prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def micro_cfg(sd_folder, prompts_file, **overrides) -> DraftConfig:
    base = {"model": str(sd_folder), "prompts": str(prompts_file), "reward": "brightness"}
    return load_config(DraftConfig, "micro", overrides={**base, "lr": 1e-2, **overrides})


def _generator(sd_folder, rank=2) -> Generator:
    gen = Generator.from_folder(sd_folder)
    for module in (gen.unet, gen.vae, gen.text_encoder):
        module.requires_grad_(False)
    torch.manual_seed(0)
    gen.attach_lora(lora_config(rank, float(rank)))
    for p in gen.lora_parameters():
        p.requires_grad_(True)
    return gen


def _brightness(gen, prompts, seeds, cfg) -> float:
    with torch.no_grad():
        s = sample_with_grad(
            gen,
            prompts,
            seeds,
            steps=cfg.steps,
            guidance=cfg.guidance,
            eta=cfg.eta,
            grad_steps=cfg.grad_steps,
        )
    return float(s.pixels.mean())


@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_differentiable_sampler_draws_the_samplers_images(sd_folder, eta):
    gen = _generator(sd_folder)
    prompts, seeds = PROMPTS[:3], [5, 6, 7]
    ref = gen.sample(prompts, seeds, steps=4, guidance=3.0, eta=eta).pixels
    for k in (1, 2, 0):
        s = sample_with_grad(gen, prompts, seeds, steps=4, guidance=3.0, eta=eta, grad_steps=k)
        assert s.pixels.requires_grad and s.prompts == prompts
        torch.testing.assert_close(s.pixels.detach().cpu(), ref, atol=1e-5, rtol=0)


def test_one_step_changes_only_lora_and_raises_the_reward_of_the_same_batch(
    sd_folder, prompts_file
):
    cfg = micro_cfg(sd_folder, prompts_file, steps=4, grad_steps=2)
    gen = _generator(sd_folder)
    base = {n: p.detach().clone() for n, p in gen.unet.named_parameters() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in gen.unet.named_parameters() if "lora_" in n}
    vae = {n: p.detach().clone() for n, p in gen.vae.named_parameters()}
    prompts, seeds = PROMPTS, [0, 1, 2, 3]
    before = _brightness(gen, prompts, seeds, cfg)
    params = gen.lora_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    reward_fn = make_differentiable_reward("brightness")
    out = train_step(gen, reward_fn, prompts, seeds, cfg, opt, params, _Acc())
    assert out["rewards"].shape == (4,) and abs(out["rewards"].mean() - before) < 1e-5
    assert out["grad_norm"] > 0
    after = _brightness(gen, prompts, seeds, cfg)
    assert after > before
    for n, p in gen.unet.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
    assert all(torch.equal(p, vae[n]) for n, p in gen.vae.named_parameters())
    assert any(not torch.equal(p, lora[n]) for n, p in gen.unet.named_parameters() if n in lora)


def _loss(gen, prompts, seeds, k=1, checkpointing=False):
    s = sample_with_grad(
        gen,
        prompts,
        seeds,
        steps=3,
        guidance=3.0,
        eta=0.0,
        grad_steps=k,
        checkpointing=checkpointing,
    )
    return -s.pixels.mean()


def _nonzero_lora(sd_folder, seed, double=False):
    gen = _generator(sd_folder)
    if double:  # float64 throughout, so finite differences resolve small slopes
        for module in (gen.unet, gen.vae, gen.text_encoder):
            module.double()
        gen.dtype = torch.float64
    with torch.no_grad():  # non-zero LoRA B, so both LoRA factors have gradients
        for n, p in gen.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed))
    return gen


def _slope_along(fn, params, grads, h):
    """Central finite difference of fn() along the unit vector grads / |grads|."""
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    values = []
    with torch.no_grad():
        for sign in (1, -1):
            for p, g in zip(params, grads, strict=True):
                p.add_(sign * h * g / norm)
            values.append(float(fn()))
            for p, g in zip(params, grads, strict=True):
                p.sub_(sign * h * g / norm)
    return (values[0] - values[1]) / (2 * h), float(norm)


def test_k1_gradient_matches_finite_differences_of_the_truncated_objective(sd_folder):
    """DRaFT-1: the gradient is that of the last step alone, the latent before it held fixed."""
    gen = _nonzero_lora(sd_folder, 1, double=True)
    params = gen.lora_parameters()
    prompts, seeds = PROMPTS[:2], [3, 4]
    grads = torch.autograd.grad(_loss(gen, prompts, seeds, k=1), params)
    traj = gen.sample(prompts, seeds, steps=3, guidance=3.0, return_trajectory=True).trajectory
    x_last = traj.latents[:, -2]  # the latent the last step starts from, under these weights

    def truncated():  # the last step and the decoder, from the fixed latent
        mean, _ = gen.step_distribution(
            x_last, traj.timesteps[-1], traj.prompt_embeds, steps=3, guidance=3.0, eta=0.0
        )
        return -gen.decode_pixels(mean).mean()

    slope, norm = _slope_along(truncated, params, grads, h=1e-3)
    assert norm > 0 and slope == pytest.approx(norm, rel=1e-3)


def test_full_chain_gradient_matches_finite_differences(sd_folder):
    """AlignProp (K = all): the gradient is the whole chain's."""
    gen = _nonzero_lora(sd_folder, 1, double=True)
    params = gen.lora_parameters()
    prompts, seeds = PROMPTS[:2], [3, 4]
    grads = torch.autograd.grad(_loss(gen, prompts, seeds, k=0), params)
    slope, norm = _slope_along(lambda: _loss(gen, prompts, seeds, k=0), params, grads, h=1e-3)
    assert norm > 0 and slope == pytest.approx(norm, rel=1e-3)


def test_checkpointing_gives_the_same_gradient_and_truncation_changes_it(sd_folder):
    gen = _nonzero_lora(sd_folder, 2)
    params = gen.lora_parameters()

    def grads(**kw):
        return torch.cat(
            [
                g.flatten()
                for g in torch.autograd.grad(_loss(gen, PROMPTS[:2], [1, 2], **kw), params)
            ]
        )

    full = grads(k=0)
    torch.testing.assert_close(grads(k=0, checkpointing=True), full, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(grads(k=1), full, atol=1e-6)


def test_lv_draws_average_several_noisings_of_the_last_step(sd_folder, prompts_file):
    gen = _generator(sd_folder)
    s = sample_with_grad(gen, PROMPTS[:2], [1, 2], steps=3, guidance=3.0, eta=0.0, lv_draws=3)
    assert s.pixels.shape[0] == 6 and s.prompts == PROMPTS[:2] * 3 and s.pixels.requires_grad
    with pytest.raises(ArtalignError, match="grad_steps=1"):
        sample_with_grad(
            gen, PROMPTS[:2], [1, 2], steps=3, guidance=3.0, eta=0.0, grad_steps=2, lv_draws=2
        )
    cfg = micro_cfg(sd_folder, prompts_file, lv_draws=2)
    params = gen.lora_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    out = train_step(
        gen,
        make_differentiable_reward("brightness"),
        PROMPTS[:2],
        [1, 2],
        cfg,
        opt,
        params,
        _Acc(),
        lv_seed=5,
    )
    assert out["rewards"].shape == (2,) and np.isfinite(out["loss"])


def test_drift_penalty_is_zero_at_the_base_model_and_grows_after_a_step(sd_folder, prompts_file):
    cfg = micro_cfg(sd_folder, prompts_file, kl_coef=1.0)
    gen = _generator(sd_folder)
    s = sample_with_grad(gen, PROMPTS[:2], [1, 2], steps=3, guidance=3.0, eta=0.0, drift=True)
    assert float(s.drift.detach()) == 0.0  # LoRA B starts at zero: the adapted model is the base
    params = gen.lora_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    train_step(
        gen, make_differentiable_reward("brightness"), PROMPTS[:2], [1, 2], cfg, opt, params, _Acc()
    )
    s = sample_with_grad(gen, PROMPTS[:2], [1, 2], steps=3, guidance=3.0, eta=0.0, drift=True)
    assert float(s.drift.detach()) > 0


def test_default_config_steps_once_per_minibatch(sd_folder, prompts_file):
    """The quick preset's hyperparameters (lr, K, η, LoRA, steps, guidance and its
    images-per-epoch / batch ratio) at micro size."""
    quick = load_config(DraftConfig, "quick", overrides={"model": "m", "prompts": "p"})
    ratio = quick.images_per_epoch // quick.train_batch_size
    cfg = load_config(
        DraftConfig,
        "quick",
        overrides={
            "model": str(sd_folder),
            "prompts": str(prompts_file),
            "reward": "brightness",
            "prompts_per_epoch": 4,
            "images_per_prompt": 2,
            "train_batch_size": 8 // ratio,
            "lora_rank": 2,
            "lora_alpha": 2.0,
        },
    )
    gen = _generator(sd_folder)
    params = gen.lora_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    prompts, seeds = epoch_prompts(PROMPTS, cfg, 0)
    before = _brightness(gen, prompts, seeds, cfg)
    stats = train_epoch(
        gen, make_differentiable_reward("brightness"), prompts, seeds, cfg, 0, opt, params, _Acc()
    )
    assert stats["steps"] == ratio
    assert _brightness(gen, prompts, seeds, cfg) > before


def test_resume_one_plus_one_epochs_equals_two(sd_folder, prompts_file, tmp_path):
    cfg = micro_cfg(sd_folder, prompts_file, epochs=2)
    straight = train_draft(cfg, tmp_path / "straight")
    train_draft(micro_cfg(sd_folder, prompts_file, epochs=1), tmp_path / "resumed")
    with pytest.raises(ArtalignError, match="--resume"):
        train_draft(cfg, tmp_path / "resumed")
    resumed = train_draft(cfg, tmp_path / "resumed", resume=True)
    assert resumed["epochs_run"] == 2 and resumed["images_seen"] == straight["images_seen"]
    assert resumed["last_reward"] == pytest.approx(straight["last_reward"], abs=1e-6)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "lora" / "pytorch_lora_weights.safetensors")
    b = load_file(tmp_path / "resumed" / "lora" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    rows = [json.loads(x) for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for name in ("train_config.yaml", "metrics.json", "samples.png", "checkpoint"):
        assert (tmp_path / "resumed" / name).exists(), name
    pipe = StableDiffusionPipeline.from_pretrained(sd_folder)
    pipe.load_lora_weights(tmp_path / "resumed" / "lora")  # plain diffusers loads the adapters


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate fixes its global state (mixed precision) with the first Accelerator of a
    process; reset it before and after, so this test's bf16 run is not refused."""
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    reset()
    yield
    reset()


def test_bf16_autocast_trains_and_records_finite_rewards(
    sd_folder, prompts_file, tmp_path, fresh_accelerate_state
):
    metrics = train_draft(
        micro_cfg(sd_folder, prompts_file, epochs=1, mixed_precision="bf16"), tmp_path / "bf16"
    )
    assert np.isfinite(metrics["last_reward"]) and metrics["images_seen"] == 4


# Growth of the resident set over the loaded models during one AlignProp step on the micro model
# (16 images, 50 DDIM steps, the gradient through all of them), its peak sampled every 2 ms.
# Measured on the 2-core CPU machine: 146 MiB with gradient checkpointing, 651 MiB without.
ALIGNPROP_GROWTH_BUDGET_MIB = 350

_ALIGNPROP_SCRIPT = """
import os, sys, threading, time, torch
from base_models.generator import Generator, lora_config
from base_models.generator.backprop import sample_with_grad

def rss_mib():  # resident set size now (ru_maxrss would keep the loading's peak)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

gen = Generator.from_folder(sys.argv[1])
for m in (gen.unet, gen.vae, gen.text_encoder):
    m.requires_grad_(False)
gen.attach_lora(lora_config(2, 2.0))
params = gen.lora_parameters()
for p in params:
    p.requires_grad_(True)
loaded, peak, done = rss_mib(), [0.0], threading.Event()

def watch():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.002)

watcher = threading.Thread(target=watch)
watcher.start()
s = sample_with_grad(gen, ["a red circle"] * 16, list(range(16)), steps=50, guidance=3.0,
                     eta=0.0, grad_steps=0, checkpointing=sys.argv[2] == "1")
(-s.pixels.mean()).backward()
done.set()
watcher.join()
assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params[1::2])
print(int(peak[0] - loaded))
"""


def _alignprop_growth_mib(sd_folder, checkpointing: bool) -> int:
    args = [sys.executable, "-c", _ALIGNPROP_SCRIPT, str(sd_folder), str(int(checkpointing))]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_alignprop_with_checkpointing_stays_within_its_memory_budget(sd_folder):
    with_ckpt = _alignprop_growth_mib(sd_folder, checkpointing=True)
    assert with_ckpt < ALIGNPROP_GROWTH_BUDGET_MIB, with_ckpt
    without = _alignprop_growth_mib(sd_folder, checkpointing=False)
    assert without > 2 * with_ckpt, (with_ckpt, without)  # checkpointing is what keeps it


def test_reward_model_scores_with_gradients_as_it_scores_without(micro_clip, tmp_path):
    model = build_reward_model(micro_clip, head="mlp")
    model.save(tmp_path / "rm")
    images = torch.rand(3, 3, 32, 32)
    prompts = ["a red circle", "a blue square", "a red circle"]
    plain, _ = make_reward_fn(tmp_path / "rm", device="cpu")(images, prompts)
    grad_fn = make_differentiable_reward("reward_model", path=str(tmp_path / "rm"), device="cpu")
    x = images.clone().requires_grad_(True)
    rewards, _ = grad_fn(x, prompts)
    torch.testing.assert_close(rewards.detach().cpu(), plain, atol=1e-5, rtol=1e-5)
    rewards.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in grad_fn.model.parameters())


def test_rewards_without_gradients_fail_fast_naming_the_differentiable_ones():
    assert {"reward_model", "brightness"} <= set(differentiable_rewards())
    assert "compressibility" not in differentiable_rewards()
    for name in ("compressibility", "oracle_fidelity", "clip_score"):
        with pytest.raises(ArtalignError, match="not differentiable.*reward_model"):
            make_differentiable_reward(name, oracle="x", clip="x")


def test_cli_runs_and_refuses_bad_input(sd_folder, prompts_file, tmp_path, capsys):
    common = [
        "align",
        "draft",
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
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainer"] == "draft" and metrics["images_seen"] == 4
    capsys.readouterr()
    bad = [
        (["--reward", "compressibility"], "not differentiable"),
        (["--reward", "reward_model"], "reward_path"),
        (["--reward", "brightness", "lv_draws=2", "grad_steps=3"], "lv_draws"),
        (["--reward", "brightness", "--resume"], "no checkpoint"),
    ]
    for extra, message in bad:
        code = main(common + ["--out", str(tmp_path / "bad")] + extra)
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "bad" / "lora").exists()
