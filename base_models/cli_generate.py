"""`artalign generate`: K images per prompt from a local SD folder (optionally with a LoRA).

Out folder (built in a temporary folder beside it, then renamed in):
    images/00000.png ...   one PNG per image; PNG text chunks hold prompt, seed, model, settings
    grid.png               one row per prompt, for people to look at
    manifest.jsonl         per image: file, prompt, prompt_index, seed, model, lora, settings
                           (and `rewritten`, the text drawn, with --rewrite-with;
                           `flagged`, with --safety-filter: the image was blocked, written black)
Image k of prompt i uses seed S + i*K + k, so any image can be made again on its own.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from base_models.cli_options import check_seed
from base_models.errors import ArtalignError
from base_models.imaging import GENERATED_PNG_KEYS, make_grid, png_info
from base_models.io_utils import replace_dir

_DTYPES = ("float32", "float16", "bfloat16")


def read_prompts(prompt: str | None, prompts: Path | None) -> list[str]:
    """The prompt list from --prompt or --prompts FILE (one per line, blank lines ignored)."""
    if (prompt is None) == (prompts is None):
        raise ArtalignError("pass exactly one of --prompt TEXT or --prompts FILE")
    if prompt is not None:
        return [prompt]
    if not prompts.is_file():
        raise ArtalignError(f"prompt file {prompts} does not exist; pass a text file")
    try:
        lines = prompts.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ArtalignError(f"prompt file {prompts} is not UTF-8 text") from None
    found = [line.strip() for line in lines if line.strip()]
    if not found:
        raise ArtalignError(f"prompt file {prompts} holds no prompts; write one prompt per line")
    return found


def plugin(group: str, name: str, option: str, package: str) -> Any:
    """The object entry point `name` of `group` names: how a package above this one plugs in."""
    found = {ep.name: ep for ep in entry_points(group=group)}
    if name not in found:
        raise ArtalignError(f"{option} needs artalign's {package} package; reinstall artalign")
    return found[name].load()


def rewrite_prompts(path: Path, texts: list[str]) -> list[str]:
    """Expand prompts with a trained prompt rewriter (`artalign prompt train`).

    The rewriter lives in a package above this one (rlhf), so it is found through the
    `artalign.rewriters` entry point instead of an import.
    """
    rewriter = plugin("artalign.rewriters", "default", "--rewrite-with", "rlhf").load(path)
    rewritten = rewriter.rewrite(texts)
    typer.echo(
        f"rewrote {len(texts)} prompts with {path} ({rewriter.last_fallbacks} kept as "
        "typed: their rewrite lost part of the prompt)"
    )
    return rewritten


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ArtalignError(f"--out {out} is not empty; pass --overwrite to replace it")


def generate(
    model: Annotated[str, typer.Option(help="Stable Diffusion folder (diffusers layout).")],
    out: Annotated[Path, typer.Option(help="Output folder for images, grid and manifest.")],
    prompt: Annotated[str | None, typer.Option(help="One prompt.")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Text file, one prompt per line.")] = None,
    n: Annotated[int, typer.Option(help="Images per prompt.")] = 4,
    lora: Annotated[Path | None, typer.Option(help="LoRA folder to attach.")] = None,
    embedding: Annotated[
        Path | None, typer.Option(help="Textual-inversion file (learned_embeds.safetensors).")
    ] = None,
    seed: Annotated[int, typer.Option(help="First seed; image k of prompt i: S+i*N+k.")] = 0,
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 50,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance (1 = off).")] = 7.5,
    eta: Annotated[float, typer.Option(help="DDIM eta: 0 deterministic, 1 DDPM-like.")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Images per UNet batch.")] = 8,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16.")] = "float32",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    rewrite_with: Annotated[
        Path | None,
        typer.Option(help="Prompt rewriter folder (artalign prompt train): draw its rewrites."),
    ] = None,
    safety_filter: Annotated[
        Path | None,
        typer.Option(
            help="Safety checker folder (artalign eval calibrate-safety): flagged images are "
            "written black and marked `flagged` in the manifest."
        ),
    ] = None,
) -> None:
    """Sample images for prompts; write PNGs (with their settings), a grid and manifest.jsonl."""
    # lazy: torch, kept out of `artalign --help`
    import torch

    from base_models.generator import Generator, SampleOutput, check_sampling_args
    from base_models.generator.sd_folder import check_prompt_lengths

    texts = read_prompts(prompt, prompts)
    if n < 1:
        raise ArtalignError(f"--n must be >= 1, got {n}")
    if dtype not in _DTYPES:
        raise ArtalignError(f"--dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    check_sampling_args(len(texts), steps, guidance, eta, batch_size, max_steps=1000)
    check_seed(seed, count=len(texts) * n)
    _check_out(out, overwrite)
    drawn = rewrite_prompts(rewrite_with, texts) if rewrite_with is not None else texts
    screen = None
    if safety_filter is not None:
        loader = plugin(
            "artalign.image_filters", "concept_checker", "--safety-filter", "evaluation"
        )
        screen = loader(safety_filter)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_prompt_lengths(model, drawn)
    gen = Generator.from_folder(model, device=device, dtype=getattr(torch, dtype))
    if lora is not None:
        gen.attach_lora(lora)
    settings = {"steps": steps, "guidance": guidance, "eta": eta, "dtype": dtype}
    if embedding is not None:
        # lazy: diffusers, kept out of `artalign --help`
        from base_models.finetune.embeddings import load_embedding

        settings["embedding_token"] = load_embedding(gen, embedding)
        settings["embedding"] = str(embedding)
    jobs = [(i, text, seed + i * n + k) for i, text in enumerate(texts) for k in range(n)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        (tmp / "images").mkdir()
        records, images = [], []
        for start in tqdm(range(0, len(jobs), batch_size), desc="generate", unit="batch"):
            batch = jobs[start : start + batch_size]
            result = gen.sample(
                [drawn[j[0]] for j in batch],
                [j[2] for j in batch],
                steps=steps,
                guidance=guidance,
                eta=eta,
                batch_size=batch_size,
            )
            flags = [False] * len(batch)
            if screen is not None:
                pixels, flagged = screen(result.pixels)
                result = SampleOutput(pixels, result.prompts, result.seeds)
                flags = [bool(f) for f in flagged]
            for (i, text, s), image, flag in zip(batch, result.images, flags, strict=True):
                record = {
                    "file": f"images/{len(records):05d}.png",
                    "prompt": text,
                    "prompt_index": i,
                    "seed": s,
                    "model": str(model),
                    "lora": str(lora) if lora else None,
                    "settings": {**settings, "height": image.height, "width": image.width},
                }
                if screen is not None:
                    record["flagged"] = flag
                    record["safety_filter"] = str(safety_filter)
                if rewrite_with is not None:
                    record["rewritten"] = drawn[i]
                    record["rewriter"] = str(rewrite_with)
                info = png_info(record, GENERATED_PNG_KEYS)
                image.save(tmp / record["file"], format="PNG", pnginfo=info)
                records.append(record)
                images.append(image)
        scale = max(1, 128 // max(images[0].size))
        make_grid(images, ncols=n, scale=scale).save(tmp / "grid.png", format="PNG")
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (tmp / "manifest.jsonl").write_text(lines, encoding="utf-8")
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    typer.echo(f"wrote {len(records)} images ({len(texts)} prompts x {n}) to {out}")
    if screen is not None:
        blocked = sum(r["flagged"] for r in records)
        typer.echo(f"safety filter {safety_filter}: blocked {blocked} of {len(records)} (black)")
