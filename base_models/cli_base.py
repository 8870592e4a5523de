"""`artalign base ...`: train and evaluate base models (CLIP, VAE, UNet) and style fine-tunes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from base_models.cli_options import (
    ConfigFile,
    HelpConfig,
    Overrides,
    Preset,
    Resume,
    print_metrics,
    resolve_config,
)
from base_models.errors import ArtalignError
from base_models.imaging import make_grid
from base_models.io_utils import atomic_path, write_json

app = typer.Typer(help="Train and evaluate base models (CLIP, VAE, UNet).", no_args_is_help=True)


@app.command("train-clip")
def train_clip_cmd(
    data: Annotated[Path, typer.Option(help="Training data set (imagefolder, CSV, parquet, tar).")],
    out: Annotated[Path, typer.Option(help="Output folder for the CLIP model.")],
    resume: Resume = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Train a tiny open_clip CLIP with open_clip's contrastive loss."""
    # lazy: open_clip, kept out of `artalign --help`
    from base_models.clip.config import ClipConfig
    from base_models.clip.train import train_clip

    cfg = resolve_config(ClipConfig, preset, config, overrides, help_config)
    metrics = train_clip(cfg, data, out, resume=resume)
    print_metrics("clip", metrics, out)


@app.command("train-vae")
def train_vae_cmd(
    data: Annotated[Path, typer.Option(help="Training images (imagefolder, CSV, parquet, tar).")],
    out: Annotated[Path, typer.Option(help="Output folder; the VAE goes to OUT/vae.")],
    resume: Resume = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Train a tiny SD-style VAE (diffusers AutoencoderKL); report held-out PSNR."""
    # lazy: diffusers, kept out of `artalign --help`
    from base_models.vae.config import VaeConfig
    from base_models.vae.train import train_vae

    cfg = resolve_config(VaeConfig, preset, config, overrides, help_config)
    metrics = train_vae(cfg, data, out, resume=resume)
    print_metrics("vae", metrics, out / "metrics.json")


@app.command("train-unet")
def train_unet_cmd(
    data: Annotated[Path, typer.Option(help="Captioned training images (any supported format).")],
    vae: Annotated[Path, typer.Option(help="VAE: the --out of train-vae, or an SD folder.")],
    clip: Annotated[Path, typer.Option(help="CLIP folder (the --out of train-clip).")],
    out: Annotated[Path, typer.Option(help="Output folder: a Stable Diffusion folder.")],
    resume: Resume = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Train a latent UNet (DDPM, CFG dropout, EMA, min-SNR) into a Stable Diffusion folder."""
    # lazy: diffusers, kept out of `artalign --help`
    from base_models.unet.config import UNetConfig
    from base_models.unet.train import train_unet

    cfg = resolve_config(UNetConfig, preset, config, overrides, help_config)
    metrics = train_unet(cfg, data, vae, clip, out, resume=resume)
    print_metrics("unet", metrics, out / "metrics.json")


@app.command("eval-clip")
def eval_clip_cmd(
    model: Annotated[str, typer.Option(help="CLIP folder, or an open_clip config name.")],
    out: Annotated[Path, typer.Option(help="Folder for metrics.json.")],
    pretrained: Annotated[
        Path | None, typer.Option(help="Local weights file when --model is a config name.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Single-object eval set; default: a fresh held-out one.")
    ] = None,
) -> None:
    """Zero-shot colour/shape/style accuracy and retrieval R@1/R@5 of a local CLIP."""
    # lazy: open_clip, kept out of `artalign --help`
    from base_models.clip.evaluate import eval_clip

    metrics = eval_clip(model, out, data=data, pretrained=pretrained)
    print_metrics("clip zero-shot and retrieval", metrics, out / "metrics.json")


@app.command("eval-generator")
def eval_generator_cmd(
    model: Annotated[Path, typer.Option(help="Generator: a Stable Diffusion folder.")],
    oracle: Annotated[Path, typer.Option(help="Oracle folder (the --out of oracle train).")],
    out: Annotated[Path, typer.Option(help="Folder for metrics.json and sample grids.")],
    clip: Annotated[
        Path | None, typer.Option(help="CLIP folder whose image tower is FID's feature space.")
    ] = None,
    lora: Annotated[Path | None, typer.Option(help="LoRA adapter folder to attach.")] = None,
    n_prompts: Annotated[int, typer.Option(help="Single-object prompts.")] = 200,
    seeds: Annotated[int, typer.Option(help="Images per prompt.")] = 4,
    n_two: Annotated[int, typer.Option(help="Two-object prompts.")] = 100,
    n_heldout: Annotated[int, typer.Option(help="Held-out colour-shape prompts.")] = 100,
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 20,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 3.0,
) -> None:
    """Oracle-read colour/shape accuracy on held-out prompts, two objects, unseen pairs; FID."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.generator import Generator, SampleOutput, check_sampling_args
    from base_models.generator.evaluate import evaluate_generator, load_instruments

    check_sampling_args(1, steps, guidance, 0.0, 1, max_steps=1000)
    if n_prompts < 1 or seeds < 1:
        raise ArtalignError(f"--n-prompts and --seeds must be >= 1, got {n_prompts}, {seeds}")
    generator = Generator.from_folder(model)
    if lora is not None:
        generator.attach_lora(lora)
    oracle_model, features = load_instruments(oracle, clip)
    out.mkdir(parents=True, exist_ok=True)

    def keep(kind, pixels, prompts):
        images = SampleOutput(pixels[: 8 * seeds], prompts[: 8 * seeds], []).images
        with atomic_path(out / f"samples_{kind}.png") as tmp:
            make_grid(images, ncols=seeds * 2, scale=4).save(tmp, format="PNG")

    metrics = evaluate_generator(
        generator,
        oracle_model,
        features,
        n_prompts=n_prompts,
        seeds=seeds,
        n_two=n_two,
        n_heldout=n_heldout,
        steps=steps,
        guidance=guidance,
        keep=keep,
    )
    metrics["model"], metrics["lora"] = str(model), str(lora) if lora else None
    write_json(out / "metrics.json", metrics)
    for kind in ("single", "heldout", "two"):
        if kind in metrics:
            print_metrics(f"generator: {kind}", metrics[kind])
    if "fid_clip" in metrics:
        print_metrics("FID (CLIP image features)", metrics["fid_clip"], out / "metrics.json")


@app.command("finetune-style")
def finetune_style_cmd(
    method: Annotated[str, typer.Option(help="lora | dreambooth | textual-inversion.")],
    model: Annotated[str, typer.Option(help="Base model: a Stable Diffusion folder.")],
    data: Annotated[Path, typer.Option(help="10-50 captioned images of the style.")],
    out: Annotated[Path, typer.Option(help="Output folder: adapter, samples, metrics.json.")],
    token: Annotated[
        str | None, typer.Option(help="Trigger token (default sks; textual-inversion: <sks>).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run in --out.")] = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Bind a style to a trigger token: LoRA, DreamBooth (prior preservation) or Textual Inversion.

    Captions train as "TOKEN style, " + the caption without its style phrase; prompt the same way.
    """
    # lazy: diffusers, kept out of `artalign --help`
    from base_models.finetune import FinetuneConfig, finetune_style

    cfg = resolve_config(FinetuneConfig, preset, config, overrides, help_config)
    metrics = finetune_style(cfg, method, model, data, out, token=token, overwrite=overwrite)
    print_metrics(f"finetune-style ({method})", metrics, out / "metrics.json")
