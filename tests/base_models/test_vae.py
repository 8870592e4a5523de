"""The tiny VAE: training, exact resume, the saved diffusers folder, PSNR and scaling factor."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from base_models.cli_main import main
from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.vae import VAE_DIR, VaeConfig, build_vae, load_vae, train_vae
from base_models.vae.evaluate import heldout_pixels, latent_scaling_factor, reconstruction_metrics
from tests.base_models.crash import stop_after_checkpoint

WEIGHTS = "diffusion_pytorch_model.safetensors"


def micro_cfg(**overrides) -> VaeConfig:
    return load_config(VaeConfig, "micro", overrides=overrides)


@pytest.fixture(scope="module")
def trained(micro_data, tmp_path_factory):
    """A micro VAE after 2 steps (checkpoints at steps 1 and 2), and its metrics."""
    out = tmp_path_factory.mktemp("vae") / "run"
    return out, train_vae(micro_cfg(), micro_data, out)


def test_training_changes_parameters_and_writes_the_folder(trained):
    out, metrics = trained
    cfg = micro_cfg()
    torch.manual_seed(cfg.seed)  # the initialisation train_vae starts from
    init = build_vae(cfg).state_dict()
    after = load_file(str(out / VAE_DIR / WEIGHTS))
    changed = [k for k in after if not torch.equal(after[k], init[k])]
    assert "encoder.conv_in.weight" in changed and "decoder.conv_out.weight" in changed
    for name in ("train_config.yaml", "metrics.json", f"{VAE_DIR}/config.json"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["steps"] == 2 and on_disk["images_seen"] == 2 * cfg.batch_size
    for key in ("eval_psnr", "eval_mse", "eval_kl", "scaling_factor", "train_seconds"):
        assert math.isfinite(on_disk[key]), key
    assert on_disk["latent_shape"] == [4, 16, 16]


def test_resume_from_step_1_matches_an_uninterrupted_run(
    trained, micro_data, tmp_path, monkeypatch
):
    import base_models.vae.train as train_module

    straight, _ = trained
    split = tmp_path / "split"
    run = lambda: train_vae(micro_cfg(), micro_data, split)  # noqa: E731
    stop_after_checkpoint(monkeypatch, train_module, run)
    assert json.loads((split / "checkpoint" / "state.json").read_text())["step"] == 1

    metrics = train_vae(micro_cfg(), micro_data, split, resume=True)
    assert metrics["steps"] == 2 and metrics["steps_this_run"] == 1
    for name in (f"{VAE_DIR}/{WEIGHTS}", "checkpoint/model.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(split / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")
    sa = load_file(str(straight / "checkpoint" / "state.safetensors"))
    sb = load_file(str(split / "checkpoint" / "state.safetensors"))
    moments = [k for k in sa if k.endswith(("exp_avg", "exp_avg_sq"))]
    assert moments
    for key in moments:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def test_saved_vae_round_trips_with_its_scaling_factor(trained):
    out, metrics = trained
    vae = AutoencoderKL.from_pretrained(out / VAE_DIR, local_files_only=True)
    assert vae.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    assert vae.config.scaling_factor != pytest.approx(0.18215)  # measured, not the default
    ours = load_vae(out)  # the run folder, its vae/ folder: both load
    torch.testing.assert_close(ours.state_dict(), load_vae(out / VAE_DIR).state_dict())
    cfg = micro_cfg()
    held = heldout_pixels(cfg.eval_n, cfg.image_size, cfg.eval_seed)
    again = reconstruction_metrics(ours, held)
    assert again["psnr"] == pytest.approx(metrics["eval_psnr"], rel=1e-5)


def _fake_vae(encode, decode=None):
    return SimpleNamespace(device=torch.device("cpu"), encode=encode, decode=decode)


def test_scaling_factor_is_one_over_the_std_of_latent_samples():
    z = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 3 + 0.5

    def encode(x):
        n = len(x)
        return SimpleNamespace(latent_dist=SimpleNamespace(sample=lambda generator: z[:n]))

    factor = latent_scaling_factor(_fake_vae(encode), torch.zeros(6, 3, 32, 32, dtype=torch.uint8))
    assert factor == pytest.approx(1.0 / z.double().std(unbiased=False).item(), rel=1e-9)


def test_psnr_of_a_four_level_error_is_36_db():
    """A decoder that is off by exactly 4 grey levels everywhere: PSNR = 20 log10(255 / 4)."""
    posterior = SimpleNamespace(mode=lambda: None, kl=lambda: torch.zeros(2))
    state = {}

    def encode(x):
        state["x"] = x
        return SimpleNamespace(latent_dist=posterior)

    def decode(_):
        return SimpleNamespace(sample=state["x"] + 4 / 127.5)

    pixels = torch.randint(0, 200, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    m = reconstruction_metrics(_fake_vae(encode, decode), pixels.to(torch.uint8))
    assert m["psnr"] == pytest.approx(20 * math.log10(255 / 4), abs=1e-4)
    assert m["mse"] == pytest.approx((4 / 255) ** 2, rel=1e-4)


# ----------------------------------------------------------------------------- bad input


def test_bad_config_values():
    with pytest.raises(ArtalignError, match="norm_num_groups"):
        micro_cfg(norm_num_groups=3).validate()
    with pytest.raises(ArtalignError, match="recon_loss"):
        micro_cfg(recon_loss="lpips").validate()
    with pytest.raises(ArtalignError, match="unknown config key 'lr_max'"):
        micro_cfg(lr_max=1)


def test_resume_and_batch_guards(trained, micro_data, tmp_path):
    out, _ = trained
    with pytest.raises(ArtalignError, match="--resume"):
        train_vae(micro_cfg(), micro_data, out)
    with pytest.raises(ArtalignError, match="no checkpoint"):
        train_vae(micro_cfg(), micro_data, tmp_path / "fresh", resume=True)
    with pytest.raises(ArtalignError, match="batch_size"):
        train_vae(micro_cfg(batch_size=64), micro_data, tmp_path / "big")


def test_load_vae_refuses_other_folders(tmp_path):
    with pytest.raises(ArtalignError, match="does not exist"):
        load_vae(tmp_path / "missing")
    with pytest.raises(ArtalignError, match="holds no VAE"):
        load_vae(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ArtalignError, match="not an AutoencoderKL"):
        load_vae(tmp_path)


# ----------------------------------------------------------------------------- command line


def test_cli_train_vae(micro_data, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "base",
            "train-vae",
            "--data",
            str(micro_data),
            "--out",
            str(out),
            "--preset",
            "micro",
            "eval_n=2",
        ]
    )
    assert code == 0
    assert (out / VAE_DIR / WEIGHTS).is_file() and "eval_psnr" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{missing}"], "does not exist"),
        (["--data", "{data}", "--preset", "huge"], "unknown preset 'huge'"),
        (["--data", "{data}", "--preset", "micro", "lr_max=1"], "unknown config key"),
    ],
)
def test_cli_bad_input_exits_2(args, message, micro_data, tmp_path, capsys):
    fill = {"missing": str(tmp_path / "missing"), "data": str(micro_data)}
    argv = ["base", "train-vae", "--out", str(tmp_path / "out")] + [a.format(**fill) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_salience_weights_objects_over_background():
    from base_models.vae.train import salience

    x = torch.full((1, 3, 8, 8), 0.8)  # a light background in [-1, 1]
    x[:, :, 2:4, 2:4] = torch.tensor([0.9, -0.9, -0.9]).view(1, 3, 1, 1)  # a red square
    w = salience(x, weight=9.0)
    assert w.shape == (1, 1, 8, 8)
    assert torch.allclose(w[0, 0, 0, 0], torch.tensor(1.0))  # background: plain weight
    assert torch.allclose(w[0, 0, 2, 2], torch.tensor(10.0))  # far from the median: 1 + 9
