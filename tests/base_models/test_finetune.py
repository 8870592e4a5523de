"""Style fine-tuning: the caption rule, what each method trains, diffusers interop, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from safetensors.torch import load_file

from base_models.cli_main import main
from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.finetune import (
    FinetuneConfig,
    load_embedding,
    strip_style,
    train_style,
    trigger_caption,
)
from base_models.finetune.data import load_style_data
from base_models.generator import Generator
from tests.base_models.sd_fixtures import make_tiny_sd_folder

KW = {"steps": 3, "guidance": 3.0}  # sampling settings of the interop checks
PROMPT = "a large red circle on a white background, striped style"


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("sd") / "tiny")


def _pipe(sd_folder) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipe_image(pipe, prompt, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return pipe(
        prompt,
        generator=g,
        output_type="pt",
        num_inference_steps=KW["steps"],
        guidance_scale=KW["guidance"],
    ).images[0]


def _run(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _finetune(method, sd_folder, data, out, *overrides, token=None, capsys=None):
    args = [
        "base",
        "finetune-style",
        "--method",
        method,
        "--model",
        sd_folder,
        "--data",
        data,
        "--out",
        out,
        "--preset",
        "micro",
        *overrides,
    ]
    if token:
        args += ["--token", token]
    code, err = _run(args, capsys)
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("caption", "stripped"),
    [
        (PROMPT, "a large red circle on a white background"),
        ("a polka-dot picture of a blue box on grey", "a picture of a blue box on grey"),
        ("shaded art: a red disc, black background", "a red disc, black background"),
        (
            "a red star against a white backdrop in outlined style",
            "a red star against a white backdrop",
        ),
        (
            "two shapes in flat style: a red star and a blue box, on white",
            "two shapes: a red star and a blue box, on white",
        ),
        ("a photo of my cat", "a photo of my cat"),
    ],
)
def test_caption_rule(caption, stripped):
    assert strip_style(caption) == stripped
    assert trigger_caption(caption, "sks") == f"sks style, {stripped}"


def test_trigger_caption_of_a_style_only_caption():
    assert trigger_caption("dotted style", "<sks>") == "<sks> style"


def _state(module) -> dict[str, torch.Tensor]:
    """Parameters by their base names (peft's `.base_layer` removed), LoRA weights left out."""
    return {
        n.replace(".base_layer", ""): p.detach().clone()
        for n, p in module.named_parameters()
        if "lora_" not in n
    }


def test_lora_trains_the_adapters_and_nothing_else(sd_folder, micro_data):
    gen = Generator.from_folder(sd_folder)
    data = load_style_data(micro_data, gen, "sks")
    assert all(c.startswith("sks style, ") for c in data.captions)
    before = {k: _state(getattr(gen, k)) for k in ("unet", "vae", "text_encoder")}
    cfg = load_config(FinetuneConfig, "micro", overrides=["lr=0.05"])
    result = train_style(gen, "lora", "sks", data, cfg)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    ups = [p for n, p in gen.unet.named_parameters() if "lora_B" in n]
    assert ups and all(p.abs().max() > 0 for p in ups)  # they start at zero
    assert result.trainable_parameters == sum(
        p.numel() for n, p in gen.unet.named_parameters() if "lora_" in n
    )
    for part, params in before.items():
        after = _state(getattr(gen, part))
        assert after.keys() == params.keys()
        for name, value in params.items():
            assert torch.equal(after[name], value), (part, name)


def test_textual_inversion_trains_only_the_new_row(sd_folder, micro_data):
    gen = Generator.from_folder(sd_folder)
    data = load_style_data(micro_data, gen, "<sks>")
    table = gen.text_encoder.get_input_embeddings().weight.detach().clone()
    init_row = table[gen.tokenizer.convert_tokens_to_ids("style</w>")]
    before = {k: _state(getattr(gen, k)) for k in ("unet", "vae", "text_encoder")}
    cfg = load_config(FinetuneConfig, "micro", overrides=["embedding_lr=0.1"])
    result = train_style(gen, "textual-inversion", "<sks>", data, cfg)
    new_table = gen.text_encoder.get_input_embeddings().weight
    assert result.token_id == len(table) == new_table.shape[0] - 1
    assert torch.equal(new_table[:-1], table)
    assert (new_table[-1] - init_row).abs().max() > 1e-3
    assert result.trainable_parameters == table.shape[1]
    assert not new_table.requires_grad
    for part, params in before.items():
        after = _state(getattr(gen, part))
        for name, value in params.items():
            if "token_embedding" not in name:
                assert torch.equal(after[name], value), (part, name)


def test_lora_output_loads_in_diffusers_and_generator(sd_folder, micro_data, tmp_path, capsys):
    out = tmp_path / "lora"
    metrics = _finetune("lora", sd_folder, micro_data, out, "lr=0.05", capsys=capsys)
    assert metrics["method"] == "lora" and metrics["steps"] == 2 and metrics["token"] == "sks"
    assert metrics["weights"] == "pytorch_lora_weights.safetensors"
    assert metrics["config"]["max_steps"] == 2 and len(metrics["loss_curve"]) == 2
    names = {p.name for p in out.iterdir()}
    assert names == {
        "pytorch_lora_weights.safetensors",
        "metrics.json",
        "samples.png",
        "finetune_config.yaml",
    }
    prompt = trigger_caption(PROMPT, "sks")
    gen = Generator.from_folder(sd_folder)
    base = gen.sample([prompt], [7], **KW).pixels
    gen.attach_lora(out)
    adapted = gen.sample([prompt], [7], **KW).pixels
    assert (adapted - base).abs().max() > 1e-3
    pipe = _pipe(sd_folder)
    pipe.load_lora_weights(out)
    torch.testing.assert_close(_pipe_image(pipe, prompt, 7), adapted[0], atol=1e-5, rtol=0)


def test_textual_inversion_output_loads_in_diffusers_generator_and_cli(
    sd_folder, micro_data, tmp_path, capsys
):
    out = tmp_path / "ti"
    metrics = _finetune(
        "textual-inversion", sd_folder, micro_data, out, "embedding_lr=0.1", capsys=capsys
    )
    assert metrics["token"] == "<sks>" and metrics["trainable_parameters"] == 32
    file = out / "learned_embeds.safetensors"
    assert file.is_file() and not (out / "pytorch_lora_weights.safetensors").exists()
    prompt = trigger_caption(PROMPT, "<sks>")
    gen = Generator.from_folder(sd_folder)
    assert load_embedding(gen, out) == "<sks>"  # the folder finds the file
    ours = gen.sample([prompt], [7], **KW).pixels
    pipe = _pipe(sd_folder)
    pipe.load_textual_inversion(str(file))
    torch.testing.assert_close(_pipe_image(pipe, prompt, 7), ours[0], atol=1e-5, rtol=0)
    plain = gen.sample([prompt.replace("<sks>", "style")], [7], **KW).pixels
    assert (ours - plain).abs().max() > 1e-3  # the learned row moved off its init word

    gen_out = tmp_path / "gen"
    args = [
        "generate",
        "--model",
        sd_folder,
        "--prompt",
        prompt,
        "--n",
        1,
        "--seed",
        7,
        "--steps",
        KW["steps"],
        "--guidance",
        KW["guidance"],
        "--embedding",
        file,
        "--out",
        gen_out,
    ]
    assert _run(args, capsys)[0] == 0
    record = json.loads((gen_out / "manifest.jsonl").read_text().splitlines()[0])
    assert record["settings"]["embedding_token"] == "<sks>"
    png = np.asarray(Image.open(gen_out / record["file"]).convert("RGB")).astype(int)
    assert np.abs(png - np.asarray(gen.sample([prompt], [7], **KW).images[0])).max() <= 1


def test_dreambooth_draws_caches_and_uses_class_images(sd_folder, micro_data, tmp_path, capsys):
    out = tmp_path / "db"
    first = _finetune("dreambooth", sd_folder, micro_data, out, capsys=capsys)
    assert first["class_images"] == first["class_images_generated"] == 2
    assert np.isfinite(first["final_prior_loss"]) and first["final_prior_loss"] > 0
    assert first["final_loss"] > first["final_instance_loss"]
    rows = [json.loads(x) for x in (out / "class_images/metadata.jsonl").read_text().splitlines()]
    captions = [json.loads(x)["text"] for x in (micro_data / "metadata.jsonl").open()]
    assert [r["text"] for r in rows] == [strip_style(c) for c in captions[:2]]
    assert [r["seed"] for r in rows] == [0, 1]
    assert all((out / "class_images" / r["file_name"]).is_file() for r in rows)
    lora = out / "pytorch_lora_weights.safetensors"
    weights = load_file(lora)

    code, err = _run(
        [
            "base",
            "finetune-style",
            "--method",
            "dreambooth",
            "--model",
            sd_folder,
            "--data",
            micro_data,
            "--out",
            out,
            "--preset",
            "micro",
        ],
        capsys,
    )
    assert code == 2 and "--overwrite" in err
    again = _finetune("dreambooth", sd_folder, micro_data, out, "--overwrite", capsys=capsys)
    assert again["class_images_generated"] == 0  # the cache is reused: the same run again
    assert all(torch.equal(v, weights[k]) for k, v in load_file(lora).items())

    image = out / "class_images" / rows[0]["file_name"]
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)  # the prior changes...
    changed = _finetune("dreambooth", sd_folder, micro_data, out, "--overwrite", capsys=capsys)
    assert changed["class_images_generated"] == 0
    changed_weights = load_file(lora)  # ...so the LoRA does: the class images are used
    assert any(not torch.equal(v, weights[k]) for k, v in changed_weights.items())

    regen = _finetune(
        "dreambooth", sd_folder, micro_data, out, "--overwrite", "class_steps=3", capsys=capsys
    )
    assert regen["class_images_generated"] == 2  # other sampler settings: drawn again


def test_bad_input_is_one_line(sd_folder, micro_data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["base", "finetune-style", "--out", tmp_path / "o", "--preset", "micro"]
    ok = ["--model", sd_folder, "--data", micro_data]
    cases = [
        (
            ["--method", "lora", "--model", tmp_path, "--data", micro_data],
            "not a Stable Diffusion folder",
        ),
        (["--method", "lora", "--model", "someone/sd", "--data", micro_data], "hub id"),
        (["--method", "lora", "--model", sd_folder, "--data", empty], str(empty)),
        (["--method", "lora", "--model", sd_folder, "--data", tmp_path / "nope"], "does not exist"),
        (["--method", "textual-inversion", *ok, "--token", "sks"], "already in the tokenizer"),
        (["--method", "textual-inversion", *ok, "init_word=two words"], "init_word"),
        (["--method", "lora", *ok, "--token", "two words"], "without spaces"),
        (["--method", "hypernetwork", *ok], "unknown method 'hypernetwork'"),
        (["--method", "lora", *ok, "batch_size=0"], "batch_size must be >= 1"),
        (["--method", "lora", *ok, "batch_size=17"], "fewer than batch_size=17"),
        (["--method", "dreambooth", *ok, "n_class_images=1"], "n_class_images=1"),
    ]
    for extra, message in cases:
        code, err = _run([*base, *extra], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and lines[-1].startswith("error: ") and message in lines[-1], (extra, err)
    assert not any((tmp_path / "o").glob("*.safetensors"))


def test_load_embedding_refuses_other_models_and_known_tokens(sd_folder, tmp_path):
    from safetensors.torch import save_file

    gen = Generator.from_folder(sd_folder)
    save_file({"<x>": torch.zeros(1, 16)}, str(tmp_path / "narrow.safetensors"))
    with pytest.raises(ArtalignError, match="another model"):
        load_embedding(gen, tmp_path / "narrow.safetensors")
    save_file({"style": torch.zeros(1, 32)}, str(tmp_path / "known.safetensors"))
    with pytest.raises(ArtalignError, match="already in the tokenizer"):
        load_embedding(gen, tmp_path / "known.safetensors")
    with pytest.raises(ArtalignError, match="does not exist"):
        load_embedding(gen, tmp_path)


def test_presets_validate():
    for preset in FinetuneConfig.PRESETS:
        load_config(FinetuneConfig, preset).validate()
