"""Diffusion-DPO: pairs and ties, shared noise, the reference, one step, data sources, resume.

The generator is the tiny random SD folder (tests/base_models/sd_fixtures.py); the preference
data is the toy store of tests/rlhf/conftest.py (16px procedural images, so every image is
resized to the generator's 32px before encoding) or an export of it.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.generator import Generator, lora_config
from labeling_app.exchange.rankings import export_rankings
from labeling_app.store import Store
from rlhf.align import dpo
from rlhf.align.dpo_config import DPOConfig
from rlhf.align.dpo_data import (
    build_dpo_data,
    encode_images,
    load_dpo_data,
    preference_pairs,
)
from rlhf.reward.data import Pair, PreferenceData, Ranking, split_by_prompt
from rlhf.reward.loaders import load_from_store
from tests.base_models.sd_fixtures import make_tiny_sd_folder


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("dpo") / "sd")


def micro(**overrides) -> DPOConfig:
    cfg = load_config(DPOConfig, "micro", overrides=overrides)
    cfg.validate()
    return cfg


@pytest.fixture(scope="module")
def gen_and_data(sd_folder, pref_store):
    """A generator with a fresh LoRA and the toy store's DPO data (read-only for tests)."""
    gen = Generator.from_folder(sd_folder)
    data = load_dpo_data(pref_store.db, gen, micro(eval_pairs=8))
    return gen, data


def _table(n_images: int = 4) -> PreferenceData:
    return PreferenceData(
        images=[f"im{i}.png" for i in range(n_images)], names=[f"im{i}" for i in range(n_images)]
    )


# ----------------------------------------------------------------------------- pairs and ties
def test_decisive_pairs_put_the_winner_first_and_ties_drop_or_split():
    data = _table().with_judgments(
        [Pair("p", 0, 1, 1.0), Pair("p", 1, 2, 0.0, weight=2.0), Pair("q", 2, 3, 0.5)],
        [Ranking("r", (0, 1, 2), (2, 1, 2))],  # image 1 best, images 0 and 2 tied
    )
    dropped = preference_pairs(data, "drop")
    assert [(i.prompt, i.winner, i.loser, i.weight) for i in dropped] == [
        ("p", 0, 1, 1.0),
        ("p", 2, 1, 2.0),
        ("r", 1, 0, 1.0),
        ("r", 1, 2, 1.0),
    ]
    assert not any(i.tie for i in dropped)
    kept = preference_pairs(data, "weight", tie_weight=0.5)
    ties = [(i.prompt, i.winner, i.loser, i.weight) for i in kept if i.tie]
    # each tie in both orders at weight tie_weight / 2 = 0.25
    assert ties == [("q", 2, 3, 0.25), ("q", 3, 2, 0.25), ("r", 0, 2, 0.25), ("r", 2, 0, 0.25)]
    assert len(kept) == len(dropped) + 4
    with pytest.raises(ArtalignError, match="ties="):
        preference_pairs(data, "keep")


def test_a_tie_in_both_orders_pulls_toward_the_reference():
    # two orders of one pair at p = 0.5: -½(log σ(x) + log σ(-x)) is smallest at x = 0
    from rlhf.align.losses import diffusion_dpo_loss

    def tie_loss(gap: float) -> float:
        e = torch.tensor([1.0 + gap, 1.0]), torch.tensor([1.0, 1.0 + gap])
        ref = torch.tensor([1.0, 1.0])
        loss, _ = diffusion_dpo_loss(e[0], e[1], ref, ref, beta=10.0, weight=torch.ones(2))
        return loss.item()

    assert tie_loss(0.0) == pytest.approx(math.log(2))
    assert tie_loss(0.1) > tie_loss(0.0) and tie_loss(-0.1) > tie_loss(0.0)


# ----------------------------------------------------------------------------- one batch
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_winner_and_loser_share_noise_and_timestep(prediction_type):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(prediction_type=prediction_type)
    torch.manual_seed(0)
    x_w, x_l = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    x_t, t, target = dpo.noised_pairs(sched, x_w, x_l, torch.Generator().manual_seed(1))
    assert torch.equal(t[:3], t[3:])
    a = sched.alphas_cumprod[t[:3]].view(-1, 1, 1, 1)
    # x_t = √ᾱ x0 + √(1-ᾱ) ε: with one ε per pair the noise cancels in the difference
    torch.testing.assert_close(x_t[:3] - x_t[3:], a.sqrt() * (x_w - x_l))
    if prediction_type == "epsilon":
        torch.testing.assert_close(target[:3], target[3:])
        torch.testing.assert_close(target[:3], (x_t[:3] - a.sqrt() * x_w) / (1 - a).sqrt())
    else:  # v = √ᾱ ε - √(1-ᾱ) x0
        torch.testing.assert_close(target[:3] - target[3:], -(1 - a).sqrt() * (x_w - x_l))


def test_reference_errors_are_the_base_models(sd_folder, gen_and_data):
    _, data = gen_and_data
    gen = Generator.from_folder(sd_folder)
    gen.attach_lora(lora_config(2))
    with torch.no_grad():  # make the adapted model differ from the base
        for p in gen.lora_parameters():
            p.normal_(0, 0.3)
    items = data.train.take(torch.arange(4))
    mw, ml, rw, rl = dpo.pair_errors(gen, data, items, torch.Generator().manual_seed(3))
    base = Generator.from_folder(sd_folder)  # no LoRA at all
    bw, bl, cw, cl = dpo.pair_errors(base, data, items, torch.Generator().manual_seed(3))
    assert torch.equal(rw, bw) and torch.equal(rl, bl)
    assert torch.equal(cw, bw)  # without adapters, model and reference are one
    assert not torch.allclose(mw, rw)
    assert mw.requires_grad and not rw.requires_grad


def test_one_step_changes_only_the_lora_weights(sd_folder, gen_and_data):
    _, data = gen_and_data
    gen = Generator.from_folder(sd_folder)
    torch.manual_seed(0)
    gen.attach_lora(lora_config(2))
    before = {n: p.detach().clone() for n, p in gen.unet.named_parameters()}
    params = gen.lora_parameters()
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    items = data.train.take(torch.arange(4))
    loss, figures = dpo.batch_loss(gen, data, items, 500.0, torch.Generator().manual_seed(0))
    # at the start the adapters' up-projections are zero: model = reference, loss = log 2
    assert figures["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert figures["implicit_acc"] == 0.0 and figures["margin"] == 0.0
    loss.backward()
    opt.step()
    changed = {n for n, p in gen.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)
    for n, p in gen.unet.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, before[n]) and p.grad is None, n


def test_heldout_figures_of_the_untrained_model(gen_and_data):
    gen, data = gen_and_data  # no adapters: the model is its own reference
    figures = dpo.heldout_figures(gen, data, beta=500.0, seed=0, batch_size=3)
    assert figures["heldout_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert figures["heldout_implicit_acc"] == 0.0 and figures["heldout_margin"] == 0.0


# ----------------------------------------------------------------------------- data
def test_data_from_a_store(gen_and_data, pref_store):
    gen, data = gen_and_data
    assert data.summary["judgments_raters"] == 2
    n_images = len(data.latents)
    assert data.latents.shape == (n_images, 4, 8, 8) and data.embeds.shape[0] == len(data.prompts)
    assert len(data.train) > 0 and len(data.heldout) == 8
    train_prompts = {data.prompts[i] for i in data.train.prompt.tolist()}
    held = {data.prompts[i] for i in data.heldout.prompt.tolist()}
    assert held and not train_prompts & held and held <= set(data.heldout_prompts)
    assert not data.train.tie.any() and torch.all(data.train.weight == 1.0)
    # a latent is the VAE posterior mean x scale of the image resized to 32px
    prefs = load_from_store(pref_store.db)
    image = prefs.load_image(prefs.used_images()[0]).resize((16, 16))
    lat = encode_images(gen, [image])
    from base_models.imaging import square_crop

    x = torch.from_numpy(square_crop(image, 32).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        ref = gen.vae.encode(x).latent_dist.mean * gen.vae.config.scaling_factor
    torch.testing.assert_close(lat, ref)


def test_data_from_a_jsonl_export_matches_the_store(gen_and_data, pref_store, tmp_path):
    gen, data = gen_and_data
    with Store(pref_store.db) as store:
        export_rankings(store, tmp_path / "r.jsonl")
    other = load_dpo_data(tmp_path / "r.jsonl", gen, micro(eval_pairs=8))
    assert len(other.train) == len(data.train) and other.prompts == data.prompts
    assert other.heldout_prompts == data.heldout_prompts
    # the same images in the same order: the same latents
    torch.testing.assert_close(other.latents, data.latents)


def test_ties_weight_keeps_ties_and_max_pairs_subsamples(sd_folder, make_store):
    def answer(task):  # a tie every third task
        return {"choice": "tie" if task.task_id % 3 == 0 else "left"}

    db = make_store(["a red circle", "a blue square", "a green star"], k=3, answer=answer)
    gen = Generator.from_folder(sd_folder)
    cfg = micro(heldout_frac=0.0)
    dropped = load_dpo_data(db, gen, cfg)
    kept = load_dpo_data(db, gen, micro(heldout_frac=0.0, ties="weight", tie_weight=0.6))
    n_ties = kept.summary["train_tie_items"]
    assert n_ties > 0 and n_ties % 2 == 0 and not dropped.train.tie.any()
    assert len(kept.train) == len(dropped.train) + n_ties
    torch.testing.assert_close(kept.train.weight[kept.train.tie], torch.full((n_ties,), 0.3))
    few = load_dpo_data(db, gen, micro(heldout_frac=0.0, max_pairs=3))
    assert len(few.train) == 3


def test_bad_data_is_refused_with_a_clear_error(sd_folder, make_store, tmp_path):
    gen = Generator.from_folder(sd_folder)
    ties = make_store(["a red circle", "a blue square"], answer=lambda t: {"choice": "tie"})
    with pytest.raises(ArtalignError, match="no decisive pairs"):
        load_dpo_data(ties, gen, micro(ties="weight"))
    with pytest.raises(ArtalignError, match="no usable judgments"):
        build_dpo_data(_table(), gen, micro())
    missing = _table().with_judgments([Pair("p", 0, 1, 1.0)], [])
    with pytest.raises(ArtalignError, match="im0 cannot be loaded"):
        build_dpo_data(missing, gen, micro(heldout_frac=0.0))
    (tmp_path / "x.jsonl").write_text(json.dumps({"generations": ["a.png", "b.png"]}) + "\n")
    with pytest.raises(ArtalignError, match="does not exist|no prompt"):
        load_dpo_data(tmp_path / "x.jsonl", gen, micro())


def test_rater_policy_is_fitted_on_the_training_prompts(gen_and_data):
    from rlhf.reward.data import fit_rater_policy
    from tests.rlhf.test_reward_rater_policy import policy_data

    gen, _ = gen_and_data
    cfg = micro(heldout_frac=0.6)  # 8 training prompts of 20, as the reward model's test
    train_p = split_by_prompt(policy_data(set()), val=0.0, test=cfg.heldout_frac, seed=cfg.seed)[0]
    data = policy_data(set(train_p.prompts()))  # c errs on held-out prompts only, d on training
    assert "c" in fit_rater_policy(data, "flagged").excluded  # what all prompts would say
    built = build_dpo_data(data, gen, cfg)
    assert built.summary["excluded_raters"] == ["d"]


# ----------------------------------------------------------------------------- runs
@pytest.fixture
def small_db(make_store):
    """Five prompts x 3 images, every pair judged 'left' once: 15 decisive pairs."""
    return make_store(
        ["a red circle", "a blue square", "a green star", "a pink heart", "a gray cross"], k=3
    )


def test_resume_continues_where_the_run_stopped(sd_folder, small_db, tmp_path):
    def cfg(steps: int) -> DPOConfig:
        return micro(
            model=str(sd_folder),
            pairs=str(small_db),
            max_steps=steps,
            checkpoint_every=2,
            sample_prompts=0,
            lr=1e-2,
        )

    dpo.train_dpo(cfg(4), tmp_path / "whole", log=None)
    half = dpo.train_dpo(cfg(2), tmp_path / "run", log=None)
    assert half["steps"] == 2
    with pytest.raises(ArtalignError, match="--resume"):
        dpo.train_dpo(cfg(4), tmp_path / "run", log=None)
    done = dpo.train_dpo(cfg(4), tmp_path / "run", resume=True, log=None)
    assert done["steps"] == 4
    log = [json.loads(x) for x in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    state = json.loads((tmp_path / "run/checkpoint/state.json").read_text())
    assert state["step"] == 4 and state["scheduler"]["last_epoch"] == 4
    # optimizer moments and step counter restored: the same weights as the uninterrupted run
    a = load_file(tmp_path / "whole/lora/pytorch_lora_weights.safetensors")
    b = load_file(tmp_path / "run/lora/pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    whole_log = (tmp_path / "whole/log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in whole_log] == pytest.approx([r["loss"] for r in log])
    with pytest.raises(ArtalignError, match="no checkpoint"):
        dpo.train_dpo(cfg(4), tmp_path / "fresh", resume=True, log=None)


def test_a_time_limit_stops_after_the_step_that_passes_it(sd_folder, small_db, tmp_path):
    cfg = micro(
        model=str(sd_folder),
        pairs=str(small_db),
        max_steps=50,
        sample_prompts=0,
        time_limit_min=1e-9,
    )
    metrics = dpo.train_dpo(cfg, tmp_path / "run", log=None)
    assert metrics["steps"] == 1 and metrics["stopped_by_time"]
    assert json.loads((tmp_path / "run/checkpoint/state.json").read_text())["step"] == 1
    assert not dpo.train_dpo(
        micro(model=str(sd_folder), pairs=str(small_db), sample_prompts=0),
        tmp_path / "full",
        log=None,
    )["stopped_by_time"]


def test_the_guard_keeps_the_best_adapters_and_stops_the_run(
    sd_folder, small_db, tmp_path, monkeypatch
):
    from rlhf.align import guard as guard_lib

    calls = []

    class FakeGuard:  # stands in for the instruments; the trainer's side is under test
        base_metrics = {"fidelity": 0.5}

        def __init__(self, cfg, generator):
            self.prompts = guard_lib.read_prompts(cfg.guard_prompts)
            self.history = []

        def check(self, step, train_reward):
            calls.append((step, train_reward))
            best, stop = step == 1, step == 2
            report = guard_lib.GuardReport(step, train_reward, {}, 1.0, best, stop, 0.0)
            self.history.append(report)
            return report

        def state_dict(self):
            return {"history": [r.to_dict() for r in self.history]}

    monkeypatch.setattr(guard_lib, "Guard", FakeGuard)
    cfg = micro(
        model=str(sd_folder), pairs=str(small_db), max_steps=5, guard_every=1, sample_prompts=0
    )
    metrics = dpo.train_dpo(cfg, tmp_path / "g", log=None)
    assert [c[0] for c in calls] == [1, 2] and metrics["steps"] == 2
    assert metrics["best_step"] == 1 and metrics["stopped_by_guard"] is True
    assert (tmp_path / "g/best/pytorch_lora_weights.safetensors").is_file()
    assert len(metrics["guard"]) == 2
    # with no guard_prompts file the guard samples the held-out split's prompts
    _, _, heldout = split_by_prompt(load_from_store(small_db), val=0.0, test=0.2, seed=0)
    held = (tmp_path / "g/heldout_prompts.txt").read_text().splitlines()
    assert held == heldout.prompts() and len(held) == 1


def test_pairs_must_fill_a_batch(sd_folder, make_store, tmp_path):
    db = make_store(["a red circle", "a blue square"])
    cfg = micro(model=str(sd_folder), pairs=str(db), heldout_frac=0.0, batch_size=8)
    with pytest.raises(ArtalignError, match="fewer than batch_size"):
        dpo.train_dpo(cfg, tmp_path / "o", log=None)
