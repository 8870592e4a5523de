"""The latent UNet trainer: training, exact resume, the SD folder it writes, the loss pieces."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from base_models.cli_main import main
from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.unet import UNetConfig, losses, train_unet
from base_models.unet.model import build_unet, noise_scheduler
from tests.base_models.crash import stop_after_checkpoint

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def micro_cfg(**overrides) -> UNetConfig:
    return load_config(UNetConfig, "micro", overrides=overrides)


@pytest.fixture(scope="module")
def parts(micro_data, tmp_path_factory):
    """A micro CLIP and a micro VAE trained on the micro data set (2 steps each)."""
    from base_models.clip import ClipConfig, train_clip
    from base_models.vae import VaeConfig, train_vae

    root = tmp_path_factory.mktemp("unet_parts")
    train_clip(load_config(ClipConfig, "micro", overrides={"eval_n": 0}), micro_data, root / "clip")
    train_vae(load_config(VaeConfig, "micro"), micro_data, root / "vae")
    return {"data": micro_data, "vae": root / "vae", "clip": root / "clip"}


def _train(parts, out, cfg=None, resume=False):
    cfg = cfg or micro_cfg()
    return train_unet(cfg, parts["data"], parts["vae"], parts["clip"], out, resume=resume)


@pytest.fixture(scope="module")
def trained(parts, tmp_path_factory):
    """A micro UNet after 2 steps (checkpoints at steps 1 and 2, a sample grid at step 2)."""
    out = tmp_path_factory.mktemp("unet") / "run"
    return out, _train(parts, out)


def test_training_changes_parameters_and_writes_an_sd_folder(trained):
    out, metrics = trained
    cfg = micro_cfg()
    torch.manual_seed(cfg.seed)  # the initialisation train_unet starts from
    init = build_unet(cfg, cross_attention_dim=32, sample_size=16, latent_channels=4).state_dict()
    raw = load_file(str(out / "checkpoint" / "model.safetensors"))
    ema = load_file(str(out / UNET_WEIGHTS))
    changed = [k for k in raw if not torch.equal(raw[k], init[k])]
    assert "conv_in.weight" in changed and "conv_out.weight" in changed
    assert any("attn2.to_k" in k for k in changed)  # cross-attention on the caption states
    assert not torch.equal(ema["conv_in.weight"], raw["conv_in.weight"])  # unet/ holds the EMA
    for name in (
        "model_index.json",
        "train_config.yaml",
        "metrics.json",
        "samples.png",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "tokenizer/tokenizer_config.json",
        "vae/config.json",
    ):
        assert (out / name).is_file(), name
    assert any((out / "logs").iterdir())  # TensorBoard events
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["steps"] == 2 and on_disk["images_seen"] == 2 * cfg.batch_size
    assert on_disk["final_loss"] > 0 and on_disk["latent_shape"] == [4, 16, 16]
    assert metrics["train_seconds"] == on_disk["train_seconds"]


def test_plain_stable_diffusion_pipeline_loads_and_samples(trained, parts):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    out, _ = trained
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    sched = pipe.scheduler.config
    assert sched.prediction_type == "epsilon" and sched.steps_offset == 1
    assert sched.set_alpha_to_one is False and sched.clip_sample is False
    vae_cfg = json.loads((parts["vae"] / "vae" / "config.json").read_text())
    assert pipe.vae.config.scaling_factor == pytest.approx(vae_cfg["scaling_factor"])
    image = pipe(
        "a red circle",
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (32, 32)


def test_resume_from_step_1_matches_an_uninterrupted_run(trained, parts, tmp_path, monkeypatch):
    """Weights, EMA, optimizer moments and the step all come back from the step-1 checkpoint."""
    import base_models.unet.train as train_module

    straight, _ = trained
    split = tmp_path / "split"
    stop_after_checkpoint(monkeypatch, train_module, lambda: _train(parts, split))
    assert json.loads((split / "checkpoint" / "state.json").read_text())["step"] == 1
    assert not (split / "model_index.json").exists()

    metrics = _train(parts, split, resume=True)
    assert metrics["steps"] == 2 and metrics["steps_this_run"] == 1
    for name in (UNET_WEIGHTS, "checkpoint/model.safetensors", "checkpoint/state.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(split / name))
        assert set(a) == set(b)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")
    state = json.loads((split / "checkpoint" / "state.json").read_text())
    assert state["ema"]["optimization_step"] == 2


def test_v_prediction_accumulation_and_checkpointing(parts, tmp_path):
    """v-prediction is saved in the scheduler; gradient checkpointing changes no numbers."""
    from diffusers import DDIMScheduler

    cfg = micro_cfg(prediction_type="v_prediction", grad_accum=2, sample_every=0)
    plain = _train(parts, tmp_path / "plain", cfg)
    cfg.gradient_checkpointing = True
    ckpt = _train(parts, tmp_path / "ckpt", cfg)
    assert plain["final_loss"] == pytest.approx(ckpt["final_loss"], rel=1e-4)
    a = load_file(str(tmp_path / "plain" / UNET_WEIGHTS))
    b = load_file(str(tmp_path / "ckpt" / UNET_WEIGHTS))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    sched = DDIMScheduler.from_pretrained(tmp_path / "plain", subfolder="scheduler")
    assert sched.config.prediction_type == "v_prediction"


TEXT_WEIGHTS = "text_encoder/model.safetensors"


def test_text_encoder_trains_only_when_asked(trained, parts, tmp_path):
    """train_text_encoder=true (the default) saves a tuned copy; false keeps the CLIP export."""
    from base_models.text_encoder import export_text_encoder

    export_text_encoder(parts["clip"], tmp_path / "export")
    exported = load_file(str(tmp_path / "export" / TEXT_WEIGHTS))
    tuned = load_file(str(trained[0] / TEXT_WEIGHTS))
    assert set(tuned) == set(exported)
    assert any(not torch.equal(tuned[k], exported[k]) for k in exported)

    frozen_out = tmp_path / "frozen"
    metrics = _train(parts, frozen_out, micro_cfg(train_text_encoder=False, sample_every=0))
    assert metrics["train_text_encoder"] is False
    frozen = load_file(str(frozen_out / TEXT_WEIGHTS))
    for k in exported:
        torch.testing.assert_close(frozen[k], exported[k], rtol=0, atol=0)
    with pytest.raises(ArtalignError, match="train_text_encoder"):
        _train(parts, frozen_out, micro_cfg(train_text_encoder=True), resume=True)


def test_curriculum_draws_single_object_items_first(parts, tmp_path, monkeypatch):
    """curriculum 2/3 of 3 steps: steps 0 and 1 see only count-1 items, step 2 the whole set."""
    import base_models.unet.train as train_module
    from base_models.vae.data import load_images

    counts = [a["count"] for a in load_images(parts["data"], 32).attrs]
    assert 4 <= counts.count(1) < len(counts)  # the micro set has both kinds
    seen: list[list[int]] = []
    real = train_module.make_batch
    monkeypatch.setattr(
        train_module,
        "make_batch",
        lambda cfg, inputs, sched, index, gen: (
            seen.append(index.tolist()) or real(cfg, inputs, sched, index, gen)
        ),
    )
    cfg = micro_cfg(max_steps=3, curriculum=2 / 3, sample_every=0, checkpoint_every=0)
    _train(parts, tmp_path / "run", cfg)
    assert len(seen) == 3
    assert all(counts[i] == 1 for step in seen[:2] for i in step)
    order = train_module.EpochOrder(len(counts), cfg.batch_size, cfg.seed)
    assert seen[2] == order(2).tolist()  # after the curriculum: the plain epoch order


def test_scratch_text_encoder_starts_fresh_and_trains(parts, tmp_path):
    """text_encoder_init=scratch: the CLIP tower's shape and tokenizer, new weights, trained."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from base_models.text_encoder import export_text_encoder

    export_text_encoder(parts["clip"], tmp_path / "export")
    exported = load_file(str(tmp_path / "export" / TEXT_WEIGHTS))
    _train(parts, tmp_path / "run", micro_cfg(text_encoder_init="scratch", sample_every=0))
    tuned = load_file(str(tmp_path / "run" / TEXT_WEIGHTS))
    assert set(tuned) == set(exported)
    key = "text_model.encoder.layers.0.self_attn.q_proj.weight"
    config = CLIPTextConfig.from_pretrained(tmp_path / "export" / "text_encoder")
    torch.manual_seed(micro_cfg().seed)
    fresh = {f"text_model.{k}": v for k, v in CLIPTextModel(config).state_dict().items()}
    assert not torch.allclose(tuned[key], exported[key], atol=1e-2)  # not the CLIP's tower
    assert not torch.equal(tuned[key], fresh[key])  # and it trained
    assert (tuned[key] - fresh[key]).abs().max() < 0.1  # from the fresh initialisation


# ----------------------------------------------------------------------------- loss pieces


def test_min_snr_weights_on_hand_computed_values():
    snr = torch.tensor([0.5, 5.0, 20.0])
    eps = losses.min_snr_weights(snr, 5.0, "epsilon")
    torch.testing.assert_close(eps, torch.tensor([1.0, 1.0, 0.25]))
    v = losses.min_snr_weights(snr, 5.0, "v_prediction")
    torch.testing.assert_close(v, torch.tensor([0.5 / 1.5, 5.0 / 6.0, 5.0 / 21.0]))
    torch.testing.assert_close(losses.min_snr_weights(snr, 0.0, "epsilon"), torch.ones(3))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_weighted_loss_is_min_snr_times_the_x0_error(prediction_type):
    """For any x0 estimate, weight x (ε or v error) = min(SNR, γ) x (x0 error), per sample."""
    from diffusers.training_utils import compute_snr

    sched = noise_scheduler(micro_cfg(prediction_type=prediction_type))
    g = torch.Generator().manual_seed(0)
    x0, noise, x0_hat = (torch.randn(3, 4, 8, 8, generator=g) for _ in range(3))
    t = torch.tensor([10, 400, 990])
    snr = losses.snr(sched.alphas_cumprod, t)
    torch.testing.assert_close(snr, compute_snr(sched, t))
    x_t = sched.add_noise(x0, noise, t)
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    eps_hat = (x_t - a.sqrt() * x0_hat) / (1 - a).sqrt()
    pred = eps_hat if prediction_type == "epsilon" else a.sqrt() * eps_hat - (1 - a).sqrt() * x0_hat
    target = losses.training_target(prediction_type, sched.alphas_cumprod, x0, noise, t)
    if prediction_type == "v_prediction":
        torch.testing.assert_close(target, sched.get_velocity(x0, noise, t))
    weights = losses.min_snr_weights(snr, 5.0, prediction_type)
    for i in range(3):
        got = losses.diffusion_loss(pred[i : i + 1], target[i : i + 1], weights[i : i + 1])
        x0_err = (x0_hat[i] - x0[i]).pow(2).mean()
        torch.testing.assert_close(got, snr[i].clamp(max=5.0) * x0_err, rtol=1e-3, atol=1e-6)


def test_caption_dropout_rate_is_honoured():
    index = torch.arange(1, 20_001)
    for p in (0.0, 0.1, 0.5):
        dropped = losses.drop_captions(index, 0, p, torch.Generator().manual_seed(1))
        share = (dropped == 0).float().mean().item()
        assert share == pytest.approx(p, abs=0.01)
        kept = dropped != 0
        assert torch.equal(dropped[kept], index[kept])


# ----------------------------------------------------------------------------- bad input


def test_bad_config_values():
    with pytest.raises(ArtalignError, match="prediction_type"):
        micro_cfg(prediction_type="sample").validate()
    with pytest.raises(ArtalignError, match="attention_levels"):
        micro_cfg(attention_levels=[5]).validate()
    with pytest.raises(ArtalignError, match="grad_accum"):
        micro_cfg(batch_size=5, grad_accum=2).validate()
    with pytest.raises(ArtalignError, match="curriculum"):
        micro_cfg(curriculum=1.5).validate()
    with pytest.raises(ArtalignError, match="text_encoder_init"):
        micro_cfg(text_encoder_init="t5").validate()
    with pytest.raises(ArtalignError, match="needs train_text_encoder"):
        micro_cfg(text_encoder_init="scratch", train_text_encoder=False).validate()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"data": "{tmp}/missing"}, "does not exist"),
        ({"vae": "{clip}"}, "holds no VAE"),
        ({"vae": "{tmp}/missing"}, "does not exist"),
        ({"clip": "{tmp}/missing"}, "CLIP folder"),
        ({"extra": "lr_max=1"}, "unknown config key"),
        ({"preset": "huge"}, "unknown preset"),
    ],
)
def test_cli_bad_input_exits_2(override, message, parts, tmp_path, capsys):
    fill = {"tmp": str(tmp_path), "clip": str(parts["clip"])}
    args = {
        "data": str(parts["data"]),
        "vae": str(parts["vae"]),
        "clip": str(parts["clip"]),
        "preset": "micro",
    }
    args.update({k: v.format(**fill) for k, v in override.items()})
    extra = [args.pop("extra")] if "extra" in args else []
    argv = ["base", "train-unet", "--out", str(tmp_path / "out")]
    argv += [f"--{k}={v}" for k, v in args.items()] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_train_unet(parts, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "base",
            "train-unet",
            "--data",
            str(parts["data"]),
            "--vae",
            str(parts["vae"]),
            "--clip",
            str(parts["clip"]),
            "--out",
            str(out),
            "--preset",
            "micro",
            "sample_every=0",
        ]
    )
    assert code == 0
    assert (out / "model_index.json").is_file() and "final_loss" in capsys.readouterr().out
