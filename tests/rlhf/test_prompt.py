"""The prompt optimiser: caption pairs, the intent check, the reward, one SFT and one GRPO step,
the rewriter, and the `prompt train|rewrite` and `generate --rewrite-with` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from base_models.cli_main import main
from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.generator import Generator
from base_models.oracle.fidelity import parse_prompt
from base_models.world.sampling import SceneSampler
from base_models.world.short_prompts import scene_from_record, short_and_rich
from rlhf.prompt.config import PromptConfig
from rlhf.prompt.data import load_pairs, make_pairs, read_records
from rlhf.prompt.keep import kept_share
from rlhf.prompt.reward import RewriteReward
from rlhf.prompt.rewriter import PromptRewriter
from rlhf.prompt.train import _save, initial_model, run_grpo, run_sft
from tests.base_models.sd_fixtures import make_tiny_sd_folder


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    """A metadata.jsonl of 40 scenes (attribute records only: the rewriter needs no pixels)."""
    path = tmp_path_factory.mktemp("prompt_data")
    rng = np.random.default_rng(0)
    sampler = SceneSampler(max_objects=2, unsafe_share=0.0)
    rows = [sampler.sample(rng)[0].to_record() for _ in range(40)]
    (path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("prompt_sd") / "tiny")


def micro_cfg(records_dir, sd_folder, **overrides) -> PromptConfig:
    base = {
        "data": str(records_dir),
        "generator": str(sd_folder),
        "reward": "brightness",
        "relevance": "none",
    }
    return load_config(PromptConfig, "micro", overrides={**base, **overrides}).validate()


def _run(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_short_prompt_is_kept_by_its_rich_caption_which_states_everything():
    rng = np.random.default_rng(1)
    sampler = SceneSampler(max_objects=3, unsafe_share=0.0)
    for _ in range(300):
        scene = sampler.sample(rng)[0]
        short, rich = short_and_rich(scene, rng)
        assert kept_share(short, rich) == 1.0, (short, rich)
        parsed, stated = parse_prompt(rich), parse_prompt(short)
        assert parsed["count"] == stated["count"] == len(scene.objects)
        assert parsed["background"] == scene.background and parsed["style"] == scene.style
        assert all(o.get("size") and o.get("colour") for o in parsed["objects"]), rich
        assert sorted(o["shape"] for o in stated["objects"]) == sorted(
            o.shape for o in scene.objects
        )


def test_kept_share_counts_dropped_and_contradicted_attributes():
    rich = "a large red star in the top left on a white background, flat style"
    assert kept_share("a red star", rich) == 1.0
    assert kept_share("a big red star", rich) == 1.0  # synonyms are the same attribute
    # red -> blue: one of (shape, colour, count) lost
    assert kept_share("a red star", "a large blue star on a white background") == pytest.approx(
        2 / 3
    )
    # place contradicted: shape, colour, count kept, place lost
    assert kept_share("a red star in the top left", "a red star in the center") == 0.75
    # an extra object breaks the stated count
    two = "a red star and a blue circle"
    assert kept_share(two, "a red star, a blue circle and a green heart") == pytest.approx(4 / 5)
    assert kept_share("a star", "=> => =>") == 0.0
    # outside the world's vocabulary: the share of the user's words kept
    assert kept_share("a photo of a cat", "a photo of a fluffy cat, 4k") == 1.0
    assert kept_share("a photo of a cat", "a photo of a dog") == 0.5


def test_records_and_pairs(records_dir, tmp_path):
    records = read_records(records_dir)
    pairs = make_pairs(records, 100, seed=0)
    assert len(pairs) == 100 and pairs == make_pairs(records, 100, seed=0)
    assert all(kept_share(p["short"], p["rich"]) == 1.0 for p in pairs)
    assert scene_from_record(records[0]).background == records[0]["background"]
    with pytest.raises(ArtalignError, match="artalign data make"):
        read_records(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png"}\n{oops\n')
    with pytest.raises(ArtalignError, match=r"metadata.jsonl line 2 is not valid JSON"):
        read_records(tmp_path)


def test_pairs_from_a_jsonl_file_hold_out_rows_training_never_uses(sd_folder, tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"short": f"a cat {i}", "rich": f"a photo of a fluffy cat {i}, 4k"} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        "prompt",
        "train",
        "--out",
        tmp_path / "run",
        "--preset",
        "micro",
        "--data",
        path,
        "--generator",
        sd_folder,
        "reward=brightness",
        "relevance=none",
    ]
    assert main([str(a) for a in args]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["heldout_pairs"] == 6
    train, held = load_pairs(path, 25, seed=0, n_heldout=2)
    assert len(train) == 25 and len(held) == 2
    assert not {p["short"] for p in held} & {p["short"] for p in train}
    assert {p["short"] for p in train} | {p["short"] for p in held} == {r["short"] for r in rows}
    path.write_text('{"short": "a cat"}\n')
    with pytest.raises(ArtalignError, match='"short" and "rich"'):
        load_pairs(path, 4, seed=0)
    path.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ArtalignError, match="too few to hold out"):
        load_pairs(path, 4, seed=0, n_heldout=1)


def test_reward_shares_seeds_within_a_group_and_charges_lost_intent(records_dir, sd_folder):
    cfg = micro_cfg(records_dir, sd_folder, keep_weight=3.0, images_per_rewrite=2)
    reward = RewriteReward(cfg, Generator.from_folder(sd_folder))
    user = ["a red star", "a red star", "a red star", "a blue circle"]
    rewrites = ["a large red star", "a large red star", "a large blue star", "a large red star"]
    total, parts = reward.score(rewrites, user)
    assert total[0] == total[1]  # same text, same prompt: same seeds, same images
    assert parts["kept"] == pytest.approx(np.mean([1, 1, 2 / 3, 1 / 3]))
    # without the image term the reward is the intent term alone
    no_image = micro_cfg(records_dir, sd_folder, image_weight=0.0, keep_weight=2.0)
    only_keep = RewriteReward(no_image, reward.generator)
    total, _ = only_keep.score(rewrites, user)
    np.testing.assert_allclose(total, [0.0, 0.0, -2.0 / 3, -4.0 / 3], atol=1e-6)


def test_one_sft_step_and_one_grpo_step_change_the_parameters(records_dir, sd_folder, tmp_path):
    cfg = micro_cfg(records_dir, sd_folder, pairs=16, sft_batch_size=16, grpo_steps=1)
    pairs = make_pairs(read_records(records_dir), 16, cfg.seed)
    model, tokenizer = initial_model(cfg, pairs)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    history = run_sft(cfg, model, tokenizer, pairs, tmp_path / "sft_work")
    assert history[-1]["step"] == 1
    changed = [k for k, v in model.named_parameters() if not torch.equal(before[k], v)]
    assert len(changed) == len(before), set(before) - set(changed)

    _save(model, tokenizer, cfg, tmp_path / "sft")
    after_sft = {k: v.detach().clone() for k, v in model.named_parameters()}
    reward = RewriteReward(cfg, Generator.from_folder(sd_folder))
    tuned, history = run_grpo(cfg, tmp_path / "sft", tokenizer, reward, pairs, tmp_path / "g")
    assert history[-1]["step"] == 1 and reward.calls == 1
    changed = [k for k, v in tuned.named_parameters() if not torch.equal(after_sft[k], v)]
    assert len(changed) >= len(after_sft) // 2, changed


@pytest.fixture(scope="module")
def trained(records_dir, sd_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("prompt_run") / "run"
    args = [
        "prompt",
        "train",
        "--out",
        out,
        "--preset",
        "micro",
        "--data",
        records_dir,
        "--generator",
        sd_folder,
        "reward=brightness",
        "relevance=none",
    ]
    assert main([str(a) for a in args]) == 0
    return out


def test_prompt_train_writes_both_stages_and_metrics(trained):
    for stage in ("sft", "rewriter"):
        assert (trained / stage / "model.safetensors").is_file()
        assert json.loads((trained / stage / "rewriter.json").read_text())["separator"] == " =>"
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["grpo_steps"] == 1 and metrics["research"] is False
    assert 0.0 <= metrics["grpo_kept_all"] <= 1.0 and metrics["pairs"] > 0
    assert (trained / "grpo_log.jsonl").read_text().strip()
    assert not [p for p in trained.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_grpo_can_start_from_an_earlier_runs_sft_model(trained, records_dir, sd_folder, tmp_path):
    out = tmp_path / "again"
    args = [
        "prompt",
        "train",
        "--out",
        out,
        "--preset",
        "micro",
        "--data",
        records_dir,
        "--generator",
        sd_folder,
        "reward=brightness",
        "relevance=none",
        f"init={trained / 'sft'}",
        "sft_epochs=0",
    ]
    assert main([str(a) for a in args]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "sft_loss_last" not in metrics and metrics["grpo_steps"] == 1
    start = PromptRewriter.load(trained / "sft", keep_intent=False)
    assert PromptRewriter.load(out / "sft", keep_intent=False).generate(["a star"]) == (
        start.generate(["a star"])
    )  # the start model is saved as it was loaded
    assert (out / "rewriter" / "model.safetensors").is_file()


def test_rewriter_never_returns_a_rewrite_that_loses_intent(trained):
    raw = PromptRewriter.load(trained, keep_intent=False)  # the run folder finds rewriter/
    prompts = ["a red star", "a small blue circle on a black background", "a heart"]
    greedy = raw.rewrite(prompts)
    assert greedy == raw.generate(prompts)
    guarded = PromptRewriter.load(trained / "rewriter", candidates=4)
    out = guarded.rewrite(prompts)
    assert out == guarded.rewrite(prompts)  # sampled candidates are seeded
    for p, r, g in zip(prompts, greedy, out, strict=True):
        if kept_share(p, r) == 1.0:
            assert g == r
        else:
            assert g == p or kept_share(p, g) == 1.0
    assert guarded.last_fallbacks == sum(g == p for p, g in zip(prompts, out, strict=True))
    greedy_only = PromptRewriter.load(trained, candidates=1).rewrite(prompts)
    assert greedy_only == [
        r if kept_share(p, r) == 1.0 else p for p, r in zip(prompts, greedy, strict=True)
    ]
    long_prompt = " ".join(["a red star"] * 40)  # longer than the micro model's context
    assert raw.generate([long_prompt]) == [long_prompt]
    with pytest.raises(ArtalignError, match="empty prompt"):
        guarded.rewrite(["  "])
    with pytest.raises(ArtalignError, match="candidates"):
        PromptRewriter.load(trained, candidates=0)


def test_rewrite_and_generate_commands(trained, sd_folder, tmp_path, capsys):
    code, out, _ = _run(["prompt", "rewrite", "--model", trained, "a star", "a red heart"], capsys)
    assert code == 0
    expected = PromptRewriter.load(trained).rewrite(["a star", "a red heart"])
    assert out.strip().splitlines() == expected
    gen_out = tmp_path / "gen"
    args = [
        "generate",
        "--model",
        sd_folder,
        "--prompt",
        "a star",
        "--n",
        2,
        "--steps",
        2,
        "--out",
        gen_out,
        "--rewrite-with",
        trained / "rewriter",
    ]
    code, out, _ = _run(args, capsys)
    assert code == 0 and "rewrote 1 prompts" in out
    rows = [json.loads(line) for line in (gen_out / "manifest.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a star", "a star"]
    assert rows[0]["rewritten"] == expected[0]


def test_prompt_commands_bad_input(records_dir, sd_folder, tmp_path, capsys):
    base = [
        "prompt",
        "train",
        "--preset",
        "micro",
        "--generator",
        sd_folder,
        "reward=brightness",
        "relevance=none",
    ]
    cases = [
        (["--out", tmp_path / "a", "--data", tmp_path], "artalign data make"),
        (["--out", tmp_path / "b", "--data", records_dir, "relevance=bogus"], "relevance"),
        (["--out", tmp_path / "c", "--data", records_dir, "num_generations=1"], "num_generations"),
        (["--out", tmp_path / "d", "--data", records_dir, "init=someone/gpt2"], "local"),
        (["--out", tmp_path / "e", "--data", records_dir, "sft_epochs=0"], "init=DIR"),
    ]
    for extra, message in cases:
        code, _, err = _run([*base, *extra], capsys)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: ") and message in last, (extra, err)
    assert not any((tmp_path / d).exists() for d in "abcde")  # nothing written for bad input
    code, _, err = _run(["prompt", "rewrite", "--model", tmp_path, "a star"], capsys)
    assert code == 2 and "not a prompt rewriter" in err
    args = [
        "generate",
        "--model",
        sd_folder,
        "--prompt",
        "a star",
        "--out",
        tmp_path / "g",
        "--rewrite-with",
        tmp_path,
    ]
    code, _, err = _run(args, capsys)
    assert code == 2 and "not a prompt rewriter" in err and not (tmp_path / "g").exists()
