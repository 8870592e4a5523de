"""Command groups of `base_models`: `data`, `oracle` and `base`. Thin: parse, call, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from base_models.config import BaseConfig, load_config, parse_overrides
from base_models.errors import ArtalignError
from base_models.imaging import make_grid
from base_models.io_utils import atomic_path, write_json, write_text
from base_models.world.dataset import DataConfig, make_dataset, sample_prompts

data_app = typer.Typer(help="Make the procedural art data set.", no_args_is_help=True)
oracle_app = typer.Typer(help="Train and score the attribute oracle.", no_args_is_help=True)
base_app = typer.Typer(
    help="Train and evaluate base models (CLIP, VAE, UNet).", no_args_is_help=True
)

Preset = Annotated[str | None, typer.Option(help="Preset: micro (tests), quick (CPU), gpu.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file of config keys.")]
Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides, KEY=VALUE ...")]
HelpConfig = Annotated[bool, typer.Option(help="Print every config key with its help; exit.")]
Resume = Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")]


def _resolve(cls: type[BaseConfig], preset, config, overrides, help_config):
    return config_from_options(cls, preset, config, overrides, help_config=help_config)


def config_from_options(
    cls: type[BaseConfig],
    preset: str | None,
    config: Path | None,
    overrides: list[str] | None,
    explicit: dict[str, Any] | None = None,
    help_config: bool = False,
    saved: Path | None = None,
) -> BaseConfig:
    """A command's config: defaults -> preset -> YAML -> KEY=VALUE -> its explicit options.

    `--help-config` prints the keys and exits. `saved` (a resumed run's train_config.yaml) is
    the YAML layer when neither --preset nor --config is given, so `--resume` continues the run
    with the settings it started with.
    """
    if help_config:
        typer.echo(cls.help_text())
        raise typer.Exit(0)
    if saved is not None and preset is None and config is None and saved.is_file():
        config = saved
    values: dict[str, Any] = parse_overrides(overrides)
    values.update({k: v for k, v in (explicit or {}).items() if v is not None})
    return load_config(cls, preset, config, values)


def print_metrics(title: str, metrics: dict, path: Path | None = None) -> None:
    """Print a flat table of the scalar figures in `metrics`."""
    typer.echo(f"\n{title}" + (f"  ({path})" if path else ""))
    for key, value in metrics.items():
        if isinstance(value, float):
            typer.echo(f"  {key:<32} {value:.4f}")
        elif isinstance(value, (int, str, bool)):
            typer.echo(f"  {key:<32} {value}")


@data_app.command("make")
def data_make(
    out: Annotated[Path, typer.Option(help="Output folder (HF imagefolder).")],
    n: Annotated[int | None, typer.Option(help="Number of images.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    size: Annotated[int | None, typer.Option(help="Image side in pixels.")] = None,
    split: Annotated[str | None, typer.Option(help="train | heldout | all.")] = None,
    exclude_style: Annotated[
        list[str] | None, typer.Option(help="Art style to leave out (repeatable).")
    ] = None,
    unsafe_share: Annotated[float | None, typer.Option(help="Share with a warning sign.")] = None,
    stereotype: Annotated[
        list[str] | None, typer.Option(help="SHAPE:VALUE:P correlation (repeatable).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Write a deterministic procedural data set: images, metadata.jsonl, provenance.json."""
    cfg = _resolve(DataConfig, preset, config, overrides, help_config)
    flags = {
        "n": n,
        "seed": seed,
        "size": size,
        "split": split,
        "unsafe_share": unsafe_share,
        "exclude_styles": exclude_style or None,
        "stereotypes": stereotype or None,
    }
    for key, value in flags.items():
        if value is not None:
            setattr(cfg, key, value)
    path = make_dataset(cfg, out, overwrite=overwrite)
    typer.echo(f"wrote {cfg.n} images ({cfg.split} split, {cfg.size}px) to {path}")


@data_app.command("prompts")
def data_prompts(
    out: Annotated[Path, typer.Option(help="Text file: one prompt per line.")],
    n: Annotated[int, typer.Option(help="Number of prompts.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    split: Annotated[str, typer.Option(help="train | heldout | all.")] = "train",
    objects: Annotated[
        str, typer.Option(help="Objects per prompt: a number (1) or a range (1-3).")
    ] = "1-3",
) -> None:
    """Write N captions drawn from the world (the data set's own captions for that seed)."""
    lo, _, hi = objects.partition("-")
    try:
        lo_n, hi_n = int(lo), int(hi or lo)
    except ValueError:
        raise ArtalignError(f"--objects {objects!r} is not a number or a range like 1-3") from None
    cfg = DataConfig(
        n=n, seed=seed, split=split, min_objects=lo_n, max_objects=hi_n, unsafe_share=0.0
    )
    write_text(out, "\n".join(sample_prompts(cfg)) + "\n")
    typer.echo(f"wrote {n} prompts ({split} split, {objects} objects) to {out}")


@data_app.command("check")
def data_check(
    data: Annotated[str, typer.Option(help="Data set: folder, CSV, parquet, or tar shards.")],
    opt_out: Annotated[Path | None, typer.Option(help="Extra opt-out list to honour.")] = None,
) -> None:
    """Load a data set as training would, decode every image, and summarise it."""
    from collections import Counter

    from tqdm import tqdm

    # lazy: torch, kept out of `artalign --help`
    from base_models.data import load_records

    records = load_records(data, opt_out=opt_out)
    sizes = Counter(r.load_image().size for r in tqdm(records, desc="decode", unit="img"))
    styles = Counter(r.attrs.get("style", "?") for r in records)
    typer.echo(f"{len(records)} items usable after opt-out lists")
    typer.echo("image sizes: " + ", ".join(f"{w}x{h}: {c}" for (w, h), c in sizes.items()))
    if set(styles) != {"?"}:
        typer.echo("styles: " + ", ".join(f"{k}: {v}" for k, v in sorted(styles.items())))


@data_app.command("preview")
def data_preview(
    data: Annotated[str, typer.Option(help="Data set: folder, CSV, parquet, or tar shards.")],
    out: Annotated[Path, typer.Option(help="PNG file for the grid.")],
    n: Annotated[int, typer.Option(help="Number of images.")] = 64,
    scale: Annotated[int, typer.Option(help="Upscale factor (nearest neighbour).")] = 3,
) -> None:
    """Save a grid of the first N images of a data set and print their captions."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.data import load_records

    records = load_records(data)[: max(1, n)]
    with atomic_path(out) as tmp:
        make_grid([r.load_image() for r in records], scale=scale).save(tmp, format="PNG")
    for i, r in enumerate(records[:8]):
        typer.echo(f"{i:>3}  {r.text}")
    typer.echo(f"wrote a grid of {len(records)} images to {out}")


@oracle_app.command("train")
def oracle_train(
    out: Annotated[Path, typer.Option(help="Output folder for the oracle.")],
    resume: Resume = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Train the attribute oracle on fresh procedural images (an evaluation instrument)."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.oracle.config import OracleConfig
    from base_models.oracle.train import train_oracle

    cfg = _resolve(OracleConfig, preset, config, overrides, help_config)
    metrics = train_oracle(cfg, out, resume=resume)
    print_metrics("oracle (validation during training)", metrics, out)


@oracle_app.command("score")
def oracle_score(
    model: Annotated[Path, typer.Option(help="Oracle folder.")],
    data: Annotated[Path, typer.Option(help="Data set with attribute records to score.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for metrics.json (default: MODEL/score).")
    ] = None,
) -> None:
    """Measure the oracle's per-attribute and exact-set accuracy on a data set."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.oracle.evaluate import score_oracle

    out = out or model / "score"
    metrics = score_oracle(model, data, out)
    print_metrics("oracle accuracy", metrics, out / "metrics.json")


@base_app.command("train-clip")
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

    cfg = _resolve(ClipConfig, preset, config, overrides, help_config)
    metrics = train_clip(cfg, data, out, resume=resume)
    print_metrics("clip", metrics, out)


@base_app.command("train-vae")
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

    cfg = _resolve(VaeConfig, preset, config, overrides, help_config)
    metrics = train_vae(cfg, data, out, resume=resume)
    print_metrics("vae", metrics, out / "metrics.json")


@base_app.command("train-unet")
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

    cfg = _resolve(UNetConfig, preset, config, overrides, help_config)
    metrics = train_unet(cfg, data, vae, clip, out, resume=resume)
    print_metrics("unet", metrics, out / "metrics.json")


@base_app.command("eval-clip")
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


@base_app.command("eval-generator")
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
    from base_models.generator import Generator, SampleOutput
    from base_models.generator.evaluate import evaluate_generator, load_instruments

    generator = Generator.from_folder(model)
    if lora is not None:
        generator.attach_lora(lora)
    oracle_model, features = load_instruments(oracle, clip)
    out.mkdir(parents=True, exist_ok=True)

    def keep(kind, pixels, prompts):
        images = SampleOutput(pixels[: 8 * seeds], prompts[: 8 * seeds], []).images
        with atomic_path(out / f"samples_{kind}.png") as tmp:
            make_grid(images, ncols=seeds * 2, scale=4).save(tmp, format="PNG")

    metrics = evaluate_generator(generator, oracle_model, features, n_prompts=n_prompts,
                                 seeds=seeds, n_two=n_two, n_heldout=n_heldout, steps=steps,
                                 guidance=guidance, keep=keep)  # fmt: skip
    metrics["model"], metrics["lora"] = str(model), str(lora) if lora else None
    write_json(out / "metrics.json", metrics)
    for kind in ("single", "heldout", "two"):
        if kind in metrics:
            print_metrics(f"generator: {kind}", metrics[kind])
    if "fid_clip" in metrics:
        print_metrics("FID (CLIP image features)", metrics["fid_clip"], out / "metrics.json")


@base_app.command("finetune-style")
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

    cfg = _resolve(FinetuneConfig, preset, config, overrides, help_config)
    metrics = finetune_style(cfg, method, model, data, out, token=token, overwrite=overwrite)
    print_metrics(f"finetune-style ({method})", metrics, out / "metrics.json")
