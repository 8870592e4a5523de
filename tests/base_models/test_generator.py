"""The generator: same images as plain diffusers, log-probs, LoRA round trips, the CLI, errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from base_models.cli_main import main
from base_models.errors import ArtalignError
from base_models.generator import Generator, gaussian_log_prob, lora_config
from base_models.generator import lora as lora_lib
from tests.base_models.sd_fixtures import make_tiny_sd_folder, tiny_unet

PROMPTS = ["a large red circle on a white background", "a small blue square, striped style"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("sd") / "tiny")


@pytest.fixture(scope="module")
def gen(sd_folder):
    return Generator.from_folder(sd_folder)


@pytest.fixture(scope="module")
def pipe(sd_folder):
    pipe = StableDiffusionPipeline.from_pretrained(sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipe_image(pipe, prompt, seed, **kwargs) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return pipe(prompt, generator=g, output_type="pt", **kwargs).images[0]


@pytest.mark.parametrize(
    ("guidance", "eta", "batch_size"), [(5.0, 0.0, 2), (1.0, 0.0, 1), (3.0, 0.8, 2)]
)
def test_same_images_as_plain_pipeline(gen, pipe, guidance, eta, batch_size):
    out = gen.sample(PROMPTS, [11, 12], steps=3, guidance=guidance, eta=eta, batch_size=batch_size)
    assert out.pixels.shape == (2, 3, 32, 32)
    assert out.seeds == [11, 12] and out.prompts == PROMPTS
    for i, (prompt, seed) in enumerate(zip(PROMPTS, [11, 12], strict=True)):
        ref = _pipe_image(
            pipe, prompt, seed, num_inference_steps=3, guidance_scale=guidance, eta=eta
        )
        torch.testing.assert_close(out.pixels[i], ref, atol=1e-5, rtol=0)
    assert out.pixels.std() > 0.01
    assert [im.size for im in out.images] == [(32, 32), (32, 32)]


def test_trajectory_shapes_and_recomputed_log_probs(gen):
    steps, guidance, eta = 4, 4.0, 1.0
    out = gen.sample(PROMPTS, 5, steps=steps, guidance=guidance, eta=eta, return_trajectory=True)
    tr = out.trajectory
    assert out.seeds == [5, 6]
    assert tr.latents.shape == (2, steps + 1, 4, 8, 8)
    assert tr.log_probs.shape == (2, steps) and torch.isfinite(tr.log_probs).all()
    assert tr.timesteps.shape == (steps,) and tr.prompt_embeds.shape == (2, 48, 32)
    for i in range(steps):  # PPO re-scores shuffled steps: pass one timestep per sample
        t = tr.timesteps[i].expand(2)
        with torch.no_grad():
            lp = gen.step_log_prob(
                tr.latents[:, i],
                tr.latents[:, i + 1],
                t,
                tr.prompt_embeds,
                steps=steps,
                guidance=guidance,
                eta=eta,
            )
        torch.testing.assert_close(lp, tr.log_probs[:, i], atol=1e-3, rtol=1e-5)
    lp = gen.step_log_prob(
        tr.latents[:, 0],
        tr.latents[:, 1],
        tr.timesteps[0],
        tr.prompt_embeds,
        steps=steps,
        guidance=guidance,
        eta=eta,
    )
    assert lp.shape == (2,)  # differentiable when adapters train: see the LoRA test


def test_deterministic_steps_have_zero_log_prob(gen):
    out = gen.sample(PROMPTS[:1], [0], steps=2, guidance=1.0, eta=0.0, return_trajectory=True)
    assert torch.equal(out.trajectory.log_probs, torch.zeros(1, 2))


def test_gaussian_log_prob_by_hand():
    mean = torch.zeros(2, 1, 2, 2)
    x = mean.clone()
    x[1] = 1.0
    lp = gaussian_log_prob(x, mean, torch.tensor(0.5))
    # per latent dimension (the mean over the 4 dims, as ddpo-pytorch), not the sum
    expected0 = -(math.log(0.5) + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(lp, torch.tensor([expected0, expected0 - 2.0]))


def test_lora_round_trip_with_diffusers(gen, pipe, tmp_path):
    kw = {"steps": 3, "guidance": 3.0}
    base = gen.sample(PROMPTS[:1], [7], **kw).pixels
    gen.attach_lora(lora_config(rank=4, alpha=8))
    try:
        torch.manual_seed(0)
        with torch.no_grad():  # stand-in for training: the up-projections start at zero
            for name, p in gen.unet.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.3)
        params = gen.lora_parameters()
        assert params and all(p.requires_grad for p in params)
        tr = gen.sample(PROMPTS[:1], [7], eta=1.0, return_trajectory=True, **kw).trajectory
        lp = gen.step_log_prob(
            tr.latents[:, 0],
            tr.latents[:, 1],
            tr.timesteps[0],
            tr.prompt_embeds,
            steps=3,
            guidance=3.0,
            eta=1.0,
        )
        lp.sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        adapted = gen.sample(PROMPTS[:1], [7], **kw).pixels
        assert (adapted - base).abs().max() > 1e-3
        with gen.lora_disabled():
            torch.testing.assert_close(gen.sample(PROMPTS[:1], [7], **kw).pixels, base)
        gen.save_lora(tmp_path / "lora")
    finally:
        gen.detach_lora()
    torch.testing.assert_close(gen.sample(PROMPTS[:1], [7], **kw).pixels, base)

    pipe.load_lora_weights(tmp_path / "lora")
    try:
        ref = _pipe_image(pipe, PROMPTS[0], 7, num_inference_steps=3, guidance_scale=3.0)
    finally:
        pipe.unload_lora_weights()
    torch.testing.assert_close(ref, adapted[0], atol=1e-5, rtol=0)
    gen.attach_lora(tmp_path / "lora")
    try:
        torch.testing.assert_close(gen.sample(PROMPTS[:1], [7], **kw).pixels, adapted)
    finally:
        gen.detach_lora()


def test_lora_for_another_model_is_refused(gen, tmp_path):
    other = tiny_unet(32, channels=(16, 32))
    lora_lib.add_lora(other, lora_config(rank=2))
    lora_lib.save_lora(other, tmp_path / "other")
    with pytest.raises(ArtalignError, match="trained for another model"):
        gen.attach_lora(tmp_path / "other")
    assert not lora_lib.has_lora(gen.unet)
    with pytest.raises(ArtalignError, match="pytorch_lora_weights"):
        gen.attach_lora(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"guidance": 0.5}, "guidance"),
        ({"steps": 0}, "steps"),
        ({"steps": 1001}, "steps"),
        ({"eta": 1.5}, "eta"),
        ({"batch_size": 0}, "batch size"),
    ],
)
def test_bad_sampling_settings(gen, kwargs, message):
    with pytest.raises(ArtalignError, match=message):
        gen.sample(PROMPTS, 0, **kwargs)


def test_bad_prompt_lists(gen):
    with pytest.raises(ArtalignError, match="no prompts"):
        gen.sample([], 0)
    with pytest.raises(ArtalignError, match="seeds"):
        gen.sample(PROMPTS, [1])


def _run(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_generate_cli_writes_images_grid_and_manifest(sd_folder, gen, tmp_path, capsys):
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text(f"{PROMPTS[0]}\n\n  {PROMPTS[1]}  \n")
    out = tmp_path / "out"
    args = [
        "generate",
        "--model",
        sd_folder,
        "--prompts",
        prompt_file,
        "--n",
        2,
        "--out",
        out,
        "--seed",
        3,
        "--steps",
        2,
        "--guidance",
        2.0,
        "--batch-size",
        3,
    ]
    assert _run(args, capsys)[0] == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["prompt_index"] for r in records] == [0, 0, 1, 1]
    assert [r["seed"] for r in records] == [3, 4, 5, 6]
    assert records[0]["settings"]["steps"] == 2 and records[0]["lora"] is None
    assert Image.open(out / "grid.png").size[0] > 64
    png = Image.open(out / records[2]["file"])
    assert png.text["prompt"] == PROMPTS[1] and png.text["seed"] == "5"
    assert png.text["model"] == str(sd_folder)
    assert json.loads(png.text["settings"])["guidance"] == 2.0
    again = gen.sample([PROMPTS[1]], [5], steps=2, guidance=2.0).images[0]
    diff = np.asarray(png.convert("RGB")).astype(int) - np.asarray(again).astype(int)
    assert np.abs(diff).max() <= 1  # batch composition moves floats by ~1e-7: rounding only
    code, err = _run(args, capsys)
    assert code == 2 and "--overwrite" in err
    assert _run([*args, "--overwrite"], capsys)[0] == 0


def test_generate_cli_bad_input(sd_folder, gen, tmp_path, capsys):
    base = ["generate", "--prompt", "a red circle", "--out", tmp_path / "o", "--steps", 1]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    bad_dims = tmp_path / "bad_dims"
    shutil.copytree(sd_folder, bad_dims)
    config = json.loads((bad_dims / "unet" / "config.json").read_text())
    (bad_dims / "unet" / "config.json").write_text(
        json.dumps({**config, "cross_attention_dim": 16})
    )
    no_vae = tmp_path / "no_vae"
    shutil.copytree(sd_folder, no_vae, ignore=shutil.ignore_patterns("vae"))
    other = tiny_unet(32, channels=(16, 32))
    lora_lib.add_lora(other, lora_config(rank=2))
    lora_lib.save_lora(other, tmp_path / "other_lora")
    model = ["--model", sd_folder]
    cases = [
        (["--model", tmp_path], "not a Stable Diffusion folder"),
        (["--model", tmp_path / "missing"], "does not exist"),
        (["--model", "someone/some-model"], "hub id"),
        (["--model", bad_dims], "cross_attention_dim"),
        (["--model", no_vae], "vae"),
        ([*model, "--lora", tmp_path / "other_lora"], "trained for another model"),
        ([*model, "--guidance", 0.5], "guidance"),
        ([*model, "--steps", 0], "steps"),
        ([*model, "--n", 0], "--n"),
    ]
    for extra, message in cases:
        code, err = _run([*base, *extra], capsys)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: ") and message in last, (extra, err)
    args = ["generate", *model, "--prompts", empty, "--out", tmp_path / "o2"]
    code, err = _run(args, capsys)
    assert code == 2 and "no prompts" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()
