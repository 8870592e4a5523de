"""Preference data: the three loaders agree, rater policy, splits, and bad input."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from base_models.errors import ArtalignError
from base_models.raters import RaterProfile
from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
from labeling_app.exchange.pickapic import export_pickapic
from labeling_app.exchange.rankings import export_rankings
from labeling_app.store import SYSTEM, Store
from rlhf.reward.data import split_by_prompt
from rlhf.reward.loaders import load_from_store, load_pickapic, load_preferences, load_rankings
from tests.rlhf.conftest import LIGHT_LOVER, TOY_PROMPTS, truth_judge


def _signature(data):
    """Judgments without image identity: (prompt, label, rater) counts."""
    pairs = Counter((p.prompt, p.p_a, p.rater) for p in data.pairs)
    ranks = Counter((r.prompt, tuple(sorted(r.ranks)), r.rater) for r in data.rankings)
    return pairs, ranks


def test_loaders_are_importable_from_loaders():
    from rlhf.reward import loaders

    assert loaders.load_from_store is load_from_store
    with pytest.raises(AttributeError):
        loaders.load_nothing  # noqa: B018


def test_store_loader(pref_store):
    data = load_from_store(pref_store.db)
    k_pairs = 6  # 4 images per prompt -> 6 pairs + 1 ranking, each judged by 2 raters
    assert len(data.pairs) == len(TOY_PROMPTS) * k_pairs * 2
    assert len(data.rankings) == len(TOY_PROMPTS) * 2
    assert len(data) == pref_store.n_judgments
    assert {p.rater for p in data.pairs} == {"truth-0", "truth-1"}
    assert len(data.used_images()) == len(TOY_PROMPTS) * 4
    assert data.load_image(data.pairs[0].image_a).mode == "RGB"
    assert len(data.all_pairs()) == len(data.pairs) + len(data.rankings) * 6
    assert data.source["kind"] == "store" and data.source["excluded_raters"] == []
    by_name = load_from_store(pref_store.db, batch="toy")
    assert len(by_name) == len(data)
    assert load_preferences(pref_store.db).summary() == data.summary()


def test_pickapic_and_jsonl_exports_load_back_the_same(pref_store, tmp_path):
    data = load_from_store(pref_store.db)
    with Store(pref_store.db) as store:
        export_pickapic(store, tmp_path / "p.parquet")
        export_rankings(store, tmp_path / "r.jsonl")
    from_parquet = load_pickapic(tmp_path / "p.parquet")
    from_jsonl = load_rankings(tmp_path / "r.jsonl")
    for other in (from_parquet, from_jsonl):
        assert _signature(other) == _signature(data)
        assert other.summary() == data.summary()
    assert isinstance(from_parquet.images[0], bytes)
    assert from_parquet.load_image(0).size == (32, 32)
    assert load_preferences(tmp_path / "p.parquet").summary() == data.summary()


def test_plain_pickapic_parquet_with_jpegs(tmp_path):
    def jpeg(colour):
        buf = io.BytesIO()
        Image.new("RGB", (24, 24), colour).save(buf, format="JPEG")
        return buf.getvalue()

    rows = {
        "caption": ["a cat", "a cat", "a dog", None],
        "jpg_0": [jpeg("red")] * 4,
        "jpg_1": [jpeg("blue")] * 4,
        "label_0": [1.0, 0.5, 0.0, None],
        "label_1": [0.0, 0.5, 1.0, None],
        "user_id": [7, 8, 7, 7],
    }
    pq.write_table(pa.table(rows), tmp_path / "pap.parquet")
    data = load_pickapic(tmp_path / "pap.parquet")
    assert [(p.prompt, p.p_a, p.rater) for p in data.pairs] == [
        ("a cat", 1.0, "7"),
        ("a cat", 0.5, "8"),
        ("a dog", 0.0, "7"),
    ]
    assert len(data.images) == 2  # de-duplicated by content
    assert data.source["dropped"] == {"unlabelled": 1}
    rows["caption"][3], rows["label_0"][3], rows["label_1"][3] = "", 1.0, 0.0
    pq.write_table(pa.table(rows), tmp_path / "bad.parquet")
    with pytest.raises(ArtalignError, match="row 3: the judgment has no prompt"):
        load_pickapic(tmp_path / "bad.parquet")


def _gold_store(tmp_path):
    db = tmp_path / "gold.db"
    with Store(db, create=True) as store:
        plan = BatchPlan(k=4, kinds=("pair",), overlap=3, seed=1, gold_pairs=3)
        prompts = [f"a large {c} circle on a white background" for c in ("red", "blue", "green")]
        prompts += [f"a small {c} square, striped style" for c in ("red", "blue", "green")]
        batch_id = make_batch(store, prompts, ProceduralSource(size=16), plan, "g")
        profile = RaterProfile(name="f", temperature=0.05, both_bad_below=0.9, both_bad_prob=0.5)
        truth_judge(store, batch_id, profile, raters=("a", "b", "c"))
    return db


def test_gold_and_both_bad(tmp_path):
    db = _gold_store(tmp_path)
    plain = load_from_store(db)
    with_gold = load_from_store(db, include_gold=True)
    assert len(with_gold.pairs) == len(plain.pairs) + 3 * 3
    # "both bad" answers: dropped by default, kept as ties on request
    with Store(db) as store:
        answers = [j.answer for j in store.judgments(SYSTEM, include_gold=True)]
    n_bad = sum(a["choice"] == "both_bad" for a in answers)
    kept = load_from_store(db, include_gold=True, both_bad="tie")
    assert n_bad > 0 and with_gold.source["dropped"] == {"both_bad": n_bad}
    assert len(kept.pairs) == len(with_gold.pairs) + n_bad
    assert len(with_gold.pairs) == len(answers) - n_bad
    with pytest.raises(ArtalignError, match="both_bad='maybe'"):
        load_from_store(db, both_bad="maybe")


def test_flagged_spammer_is_excluded_and_weights(tmp_path):
    db = tmp_path / "spam.db"
    with Store(db, create=True) as store:
        plan = BatchPlan(k=4, kinds=("pair",), overlap=3, seed=2)
        batch_id = make_batch(store, TOY_PROMPTS, ProceduralSource(size=16), plan, "s")
        truth_judge(store, batch_id, LIGHT_LOVER, raters=("a", "b", "c"), spammers=("c",))
    assert load_from_store(db).source["excluded_raters"] == []  # by default every rater
    data = load_from_store(db, exclude_raters="flagged")
    assert data.source["excluded_raters"] == ["c"]
    assert {p.rater for p in data.pairs} == {"a", "b"}
    everyone = load_from_store(db, exclude_raters=None, rater_weights=True)
    weights = everyone.source["rater_weights"]
    assert weights["c"] < 0.3 < weights["a"] and weights["a"] <= 1.0
    assert {p.weight for p in everyone.pairs if p.rater == "c"} == {weights["c"]}
    named = load_from_store(db, exclude_raters=["a"])
    assert {p.rater for p in named.pairs} == {"b", "c"}


def test_split_by_prompt(pref_store):
    data = load_from_store(pref_store.db)
    train, val, test = split_by_prompt(data, val=0.1, test=0.2, seed=0)
    sets = [set(s.prompts()) for s in (train, val, test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set.union(*sets) == set(data.prompts())
    assert (len(sets[1]), len(sets[2])) == (2, 5)  # round(0.1 * 24), round(0.2 * 24)
    assert len(train) + len(val) + len(test) == len(data)
    shuffled = data.with_judgments(data.pairs[::-1], data.rankings[::-1])
    assert split_by_prompt(shuffled, 0.1, 0.2, 0)[2].prompts() == test.prompts()
    assert split_by_prompt(data, 0.1, 0.2, 1)[2].prompts() != test.prompts()
    tiny = data.subset(data.prompts()[:2])
    with pytest.raises(ArtalignError, match="cannot be split"):
        split_by_prompt(tiny, 0.4, 0.4)
    half = train.sample(0.5, seed=0)
    assert len(half) == round(len(train) / 2) and set(half.pairs) <= set(train.pairs)


def test_empty_and_one_class_data(make_store, tmp_path):
    ties = make_store(["a red circle", "a blue square"], answer=lambda t: {"choice": "tie"})
    with pytest.raises(ArtalignError, match="every judgment .* is a tie"):
        load_from_store(ties)
    bad = make_store(["a red circle"], answer=lambda t: {"choice": "both_bad"}, name="bad.db")
    with pytest.raises(ArtalignError, match="no usable judgments"):
        load_from_store(bad)
    assert len(load_from_store(bad, both_bad="tie", check=False)) == 1
    with pytest.raises(ArtalignError, match="does not exist"):
        load_preferences(tmp_path / "none.db")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ArtalignError, match="cannot tell what"):
        load_preferences(tmp_path / "x.txt")


def test_jsonl_errors_name_the_line(pref_store, tmp_path):
    with Store(pref_store.db) as store:
        export_rankings(store, tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    no_prompt = {k: v for k, v in first.items() if k != "prompt"}
    (tmp_path / "bad.jsonl").write_text(lines[1] + "\n" + json.dumps(no_prompt) + "\n")
    with pytest.raises(ArtalignError, match=r"bad.jsonl:2: the judgment has no prompt"):
        load_rankings(tmp_path / "bad.jsonl")
    missing = {**first, "generations": ["nowhere.png", "nowhere2.png"]}
    (tmp_path / "bad.jsonl").write_text(json.dumps(missing) + "\n")
    with pytest.raises(ArtalignError, match=r"bad.jsonl:1: image .*nowhere.png does not exist"):
        load_rankings(tmp_path / "bad.jsonl")


def test_broken_image_names_the_file(pref_store, tmp_path):
    db = tmp_path / "copy.db"
    shutil.copy(pref_store.db, db)
    shutil.copytree(f"{pref_store.db}.images", f"{db}.images")
    data = load_from_store(db)
    victim = data.images[data.pairs[0].image_a]
    Path(victim).write_bytes(b"not a png")
    with pytest.raises(ArtalignError, match=f"image {victim} .*cannot be loaded"):
        data.load_image(data.pairs[0].image_a)
