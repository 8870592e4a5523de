"""`artalign loop`: the whole loop on micro presets, done-markers, reruns, a SIGKILL mid-run,
rounds, --human, adopting `make demo` outputs, the config, and the bias/safety regression banner.

The module fixture runs the micro loop with two rounds once (about a minute on 2 CPU cores);
the other loop tests reuse or copy its folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from base_models.errors import ArtalignError
from evaluation.report import Column, ReportView, regression_summary, render
from rlhf.loop.config import REPO_ROOT, load_loop_config
from rlhf.loop.human import wait_for_batch
from rlhf.loop.runner import Markers, plan, run_loop, run_stages, why_run
from rlhf.loop.stages import Stage, build_stages, copy_store

BASE_STAGES = [
    "data",
    "oracle_test",
    "oracle",
    "oracle_eval",
    "clip",
    "clip_eval",
    "vae",
    "generator",
    "generator_eval",
    "prompts",
    "labels",
    "label_sim",
    "label_agreement",
]
ROUND1 = [*BASE_STAGES, "reward", "ddpo", "eval", "dpo", "eval_dpo"]
ROUND2 = [
    "round2.labels",
    "round2.label_sim",
    "round2.label_agreement",
    "round2.reward",
    "round2.ddpo",
    "round2.eval",
]
ALL = [*ROUND1, *ROUND2, "report"]


def _micro(**kw):
    return load_loop_config("micro", None, [f"{k}={v}" for k, v in kw.items()])


@pytest.fixture(scope="module")
def micro_loop(tmp_path_factory):
    out = tmp_path_factory.mktemp("loop") / "micro"
    result = run_loop(_micro(rounds=2), out, log=lambda _m: None)
    return out, result


def _finished(out: Path) -> dict[str, float]:
    markers = Markers(out)
    return {name: markers.done(name)["finished_ts"] for name in ALL if markers.done(name)}


# ----------------------------------------------------------------------------- the micro loop
def test_micro_loop_writes_every_stage_and_a_report_of_both_rounds(micro_loop):
    out, result = micro_loop
    assert result["ran"] == ALL and not result["skipped"] and not result["adopted"]
    for name in ALL:
        marker = json.loads((out / ".stages" / f"{name}.done").read_text())
        assert marker["stage"] == name and marker["seconds"] >= 0 and marker["finished_at"]
        assert not (out / ".stages" / f"{name}.started").exists()
    ddpo = Markers(out).done("ddpo")["command"]
    assert ddpo[:3] == ["artalign", "align", "ddpo"] and "$OUT/reward" in ddpo
    for path in (
        "data/metadata.jsonl",
        "oracle/model.safetensors",
        "generator/model_index.json",
        "labels/labels.db",
        "reward/metrics.json",
        "ddpo/lora",
        "dpo/lora",
        "eval/report.html",
        "eval_dpo/metrics.json",
        "round2/labels.db",
        "round2/ddpo/lora",
        "round2/eval/metrics.json",
    ):
        assert (out / path).exists(), path
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [
        "round 1 (DDPO)",
        "round 2 (DDPO)",
        "round 1 (DPO)",
    ]
    for row in summary["rounds"]:
        for name in ("reward win-rate", "rater win-rate", "fidelity, aligned"):
            assert 0.0 <= row["figures"][name]["value"] <= 1.0
    assert set(summary["regression"]) == {"bias", "safety"}
    assert summary["regression"]["safety"]["n_figures"] > 0
    html = (out / "report.html").read_text()
    body = html[html.index("<body>") :]
    # the page opens with the final round's rater win-rate and its CI, then before / after images
    # per prompt, then the regression banner and the rounds table
    win = summary["rounds"][1]["figures"]["rater win-rate"]
    lo, hi = win["ci"]
    assert f"<b>{win['value']:.3f}</b> [95% CI {lo:.3f}, {hi:.3f}]" in body
    first_image = body.index('<img class="strip"')
    assert body.index('class="headline"') < body.index("Before and after") < first_image
    assert first_image < body.index('id="regression"') < body.index("Loop rounds")
    assert body.index("Loop rounds") < body.index("<h2>Summary")
    assert "round 2 (DDPO)" in html and 'data-aspect="rounds"' in html
    assert "round2/eval" in summary["final_eval"]


def test_round_two_labels_the_aligned_model_and_trains_on_both_rounds(micro_loop):
    from labeling_app.store import Store

    out, _ = micro_loop
    with Store(out / "round2" / "labels.db") as store:
        assert [b.name for b in store.batches()] == ["round1", "round2"]
        tasks = store.tasks(store.batch("round2").id)
        image = store.images(tasks[0].image_ids)[tasks[0].image_ids[0]]
        assert image.settings["lora"] == str(out / "ddpo" / "lora")
        assert image.seed >= 1_000_000
    with Store(out / "labels" / "labels.db") as store:  # round 1's store is left as it was
        assert [b.name for b in store.batches()] == ["round1"]
    data = json.loads((out / "round2" / "reward" / "metrics.json").read_text())["data"]["all"]
    round1 = json.loads((out / "reward" / "metrics.json").read_text())["data"]["all"]
    assert data["prompts"] == round1["prompts"] and data["pairs"] > round1["pairs"]
    cfg = (out / "round2" / "ddpo" / "train_config.yaml").read_text()
    assert f"init_lora: {out / 'ddpo' / 'lora'}" in cfg


def test_rerun_skips_every_stage(micro_loop):
    out, _ = micro_loop
    before = _finished(out)
    t0 = time.perf_counter()
    result = run_loop(_micro(rounds=2), out, log=lambda _m: None)
    assert time.perf_counter() - t0 < 10
    assert result["ran"] == [] and result["skipped"] == ALL
    assert _finished(out) == before


def test_loop_cli_dry_run_and_errors(micro_loop, capsys):
    from rlhf.cli_loop import main

    out, _ = micro_loop
    assert main(["--out", str(out), "--preset", "micro", "--rounds", "2", "--dry-run"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith(" ")]
    assert len(lines) == len(ALL) and all(ln.split()[1] == "done" for ln in lines)
    # a changed stage setting re-runs that stage and everything after it that reads from it
    assert (
        main(
            ["--out", str(out), "--preset", "micro", "--rounds", "2", "--dry-run", "ddpo.epochs=3"]
        )
        == 0
    )
    states = dict(
        ln.split(maxsplit=1)
        for ln in capsys.readouterr().out.splitlines()
        if not ln.startswith(" ")
    )
    assert states["ddpo"] == "run (its command changed)"
    assert states["eval"] == "run (ddpo runs first)" and states["round2.ddpo"].startswith("run")
    assert states["dpo"] == "done" and states["reward"] == "done"
    assert main(["--out", str(out), "--preset", "sd15"]) == 2
    assert "train_base is false (preset sd15): set model=PATH" in capsys.readouterr().err
    assert main(["--out", str(out), "--help-config"]) == 0
    assert "rounds (int, default 1)" in capsys.readouterr().out


def test_sigkill_mid_stage_then_rerun_finishes_without_redoing_finished_stages(
    micro_loop, tmp_path
):
    """Copy the finished loop, forget everything from the reward model on, run the loop in a
    subprocess and SIGKILL it while DDPO trains; the rerun resumes and completes."""
    src, _ = micro_loop
    out = tmp_path / "moved"  # also checks that markers survive a moved folder ($OUT)
    shutil.copytree(src, out)
    redo = ["reward", "ddpo", "eval", "dpo", "eval_dpo", *ROUND2, "report"]
    for name in redo:
        (out / ".stages" / f"{name}.done").unlink()
    for folder in ("reward", "ddpo", "eval", "dpo", "eval_dpo", "round2", "report.html"):
        p = out / folder
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    kept = {k: v for k, v in _finished(out).items() if k not in redo}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "rlhf.cli_loop",
        "--preset",
        "micro",
        "--rounds",
        "2",
        "--out",
        str(out),
    ]
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    checkpoint = out / "ddpo" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    markers = Markers(out)
    assert markers.done("reward") is not None and markers.done("report") is None
    assert markers.done("ddpo") is None  # killed in DDPO's second epoch, after a checkpoint
    messages: list[str] = []
    result = run_loop(_micro(rounds=2), out, log=messages.append)
    assert set(result["skipped"]) >= set(kept) | {"reward"}
    assert "reward" not in result["ran"] and result["ran"][-1] == "report"
    assert {k: v for k, v in _finished(out).items() if k in kept} == kept
    # the trainer continued from its checkpoint instead of starting over
    assert any(m.startswith("resuming: artalign align ddpo") for m in messages)
    assert "--resume" not in markers.done("ddpo")["command"]
    epochs = [
        json.loads(ln)["epoch"] for ln in (out / "ddpo" / "log.jsonl").read_text().splitlines()
    ]
    assert sorted(set(epochs)) == [0, 1]  # both epochs ran (resume: the second after the kill)
    for name in ALL:
        assert markers.done(name) is not None, name
    assert (out / "report.html").is_file() and (out / "round2" / "eval" / "report.html").is_file()
    assert json.loads((out / "summary.json").read_text())["out"] == str(out.resolve())


# ----------------------------------------------------------------------------- runner logic
def _fake_stages(out: Path, calls: list[str], legacy: bool = False) -> list[Stage]:
    def make(name: str, deps: tuple[str, ...] = ()) -> Stage:
        target = out / name / "out.txt"

        def act() -> None:
            calls.append(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(name)

        return Stage(
            name,
            deps,
            (target,),
            action=act,
            describe=f"make {name}",
            legacy=target if legacy else None,
            clean=(target.parent,),
        )

    return [make("a"), make("b", ("a",)), make("c", ("b",)), make("d", ())]


def test_markers_skip_done_stages_and_rerun_what_depends_on_a_rerun(tmp_path):
    calls: list[str] = []
    stages = _fake_stages(tmp_path, calls)
    assert run_stages(stages, tmp_path, log=lambda _m: None)["ran"] == ["a", "b", "c", "d"]
    assert run_stages(stages, tmp_path, log=lambda _m: None)["ran"] == []
    (tmp_path / ".stages" / "b.done").unlink()  # b must run again; so must c, which reads b
    (tmp_path / "b" / "partial.bin").write_text("half")
    calls.clear()
    assert run_stages(stages, tmp_path, log=lambda _m: None)["ran"] == ["b", "c"]
    assert not (tmp_path / "b" / "partial.bin").exists()  # a fresh start removes partial output
    stages[3].describe = "make d differently"  # a changed command re-runs the stage
    assert why_run(stages[3], Markers(tmp_path)) == "its command changed"
    with pytest.raises(ValueError, match="unknown stage"):
        run_stages([Stage("x", ("nope",), ())], tmp_path)


def test_outputs_of_an_earlier_make_demo_are_adopted_not_rerun(tmp_path):
    calls: list[str] = []
    stages = _fake_stages(tmp_path, calls, legacy=True)
    for name in ("a", "b", "d"):  # make demo made a, b and d; c is missing
        (tmp_path / name).mkdir()
        (tmp_path / name / "out.txt").write_text("old")
    what = [w for _, w in plan(stages, Markers(tmp_path))]
    assert what == ["adopt", "adopt", "run (not run yet)", "adopt"]
    result = run_stages(stages, tmp_path, log=lambda _m: None)
    assert result["adopted"] == ["a", "b", "d"] and result["ran"] == ["c"] and calls == ["c"]
    assert Markers(tmp_path).done("a")["adopted"] is True
    assert (tmp_path / "a" / "out.txt").read_text() == "old"
    # a stage the loop started and did not finish is never adopted, even if its file exists
    tmp2 = tmp_path / "again"
    stages = _fake_stages(tmp2, calls, legacy=True)
    (tmp2 / "a").mkdir(parents=True)
    (tmp2 / "a" / "out.txt").write_text("half")
    Markers(tmp2).start(stages[0])
    assert run_stages(stages[:1], tmp2, log=lambda _m: None)["ran"] == ["a"]


def test_stages_of_human_and_sd15_configs(tmp_path):
    waited: list[tuple[Path, str]] = []
    cfg = _micro(human="true", rounds=2)
    stages = build_stages(
        cfg, tmp_path, wait=lambda db, b: waited.append((db, b)), report=lambda: None
    )
    names = [s.name for s in stages]
    assert "label_human" in names and "round2.label_human" in names
    assert not any(n.endswith("label_sim") for n in names)
    reward = next(s for s in stages if s.name == "reward")
    assert reward.deps == ("label_human", "clip")
    next(s for s in stages if s.name == "round2.label_human").action()
    assert waited == [(tmp_path / "round2" / "labels.db", "round2")]
    sd = tmp_path / "sd"
    for d in ("model", "clip"):
        (sd / d).mkdir(parents=True)
    (sd / "prompts.txt").write_text("a red circle\n")
    (sd / "labels.db").write_text("")
    cfg = load_loop_config(
        "sd15",
        None,
        [
            f"model={sd / 'model'}",
            f"clip={sd / 'clip'}",
            f"prompts={sd / 'prompts.txt'}",
            f"labels_db={sd / 'labels.db'}",
        ],
    )
    stages = build_stages(cfg, tmp_path, wait=lambda *_: None, report=lambda: None)
    assert [s.name for s in stages] == ["reward", "ddpo", "eval", "dpo", "eval_dpo", "report"]
    assert "--backbone-kind" in stages[0].argv and "open_clip" in stages[0].argv
    assert stages[2].argv[stages[2].argv.index("--suite") + 1] == "sd"
    assert "--oracle" not in stages[2].argv  # no oracle: no simulated raters, no fidelity
    with pytest.raises(ArtalignError, match="pass --human"):
        load_loop_config(
            "sd15",
            None,
            [f"model={sd / 'model'}", f"clip={sd / 'clip'}", f"prompts={sd / 'prompts.txt'}"],
        )


def test_aligner_draft_runs_reward_backprop_in_every_round(tmp_path):
    cfg = _micro(aligner="draft", rounds=2)
    stages = {
        s.name: s for s in build_stages(cfg, tmp_path, wait=lambda *_: None, report=lambda: None)
    }
    assert "ddpo" not in stages and "round2.ddpo" not in stages
    draft = stages["draft"]
    assert draft.argv[:2] == ["align", "draft"] and draft.resume_dir == tmp_path / "draft"
    assert draft.argv[draft.argv.index("--preset") + 1] == "micro"
    assert "draft" in stages["eval"].deps
    round2 = stages["round2.draft"]
    assert f"init_lora={tmp_path / 'draft' / 'lora'}" in round2.argv and "draft" in round2.deps
    labels2 = stages["round2.labels"].argv
    assert labels2[labels2.index("--lora") + 1] == str(tmp_path / "draft" / "lora")
    with pytest.raises(ArtalignError, match="aligner must be one of ddpo, draft"):
        _micro(aligner="ppo")


def test_also_align_runs_the_other_trainer_beside_the_aligner_with_its_own_eval(tmp_path):
    cfg = _micro(also_align="draft")
    stages = {
        s.name: s for s in build_stages(cfg, tmp_path, wait=lambda *_: None, report=lambda: None)
    }
    assert stages["ddpo"].argv[:2] == ["align", "ddpo"]
    draft = stages["draft"]
    assert draft.argv[:2] == ["align", "draft"] and draft.deps == stages["ddpo"].deps
    assert draft.argv[draft.argv.index("--reward-path") + 1] == str(tmp_path / "reward")
    evaluation = stages["eval_draft"]
    assert evaluation.deps[:2] == ("draft", "reward")
    assert evaluation.argv[evaluation.argv.index("--lora") + 1] == str(tmp_path / "draft" / "lora")
    with pytest.raises(ArtalignError, match="also_align holds 'ddpo'"):
        _micro(also_align="ddpo")  # the aligner itself


def test_config_layers_merge_stage_by_stage(tmp_path):
    yaml_file = tmp_path / "loop.yaml"
    yaml_file.write_text(
        "preset: micro\nrounds: 2\noverrides: {ddpo: [epochs=3]}\npresets: {reward: quick}\n"
    )
    cfg = load_loop_config(None, yaml_file, ["ddpo.lr=1e-3", "k=4"])
    assert cfg.rounds == 2 and cfg.k == 4 and cfg.n_prompts == 6  # micro underneath
    assert cfg.overrides["ddpo"] == ["epochs=3", "lr=1e-3"]
    assert cfg.overrides["data"] == ["n=64"]  # the preset's other stages are kept
    assert cfg.presets["reward"] == "quick" and cfg.presets["ddpo"] == "micro"
    assert Path(cfg.rater_profile).is_absolute() and Path(cfg.rater_profile).is_file()
    assert load_loop_config().presets["vae"] == "quick"  # quick is the default
    with pytest.raises(ArtalignError, match="unknown stage"):
        load_loop_config("micro", None, ["nostage.x=1"])
    with pytest.raises(ArtalignError, match="'rounds' must be >= 1"):
        load_loop_config("micro", None, ["rounds=0"])
    for name in ("micro", "quick"):  # the shipped YAML files say what the presets say
        assert load_loop_config(
            None, REPO_ROOT / "configs" / "loop" / f"{name}.yaml"
        ) == load_loop_config(name)


# ----------------------------------------------------------------------------- --human
def test_human_wait_returns_when_the_admin_closes_the_batch(tmp_path):
    from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
    from labeling_app.store import Store

    db = tmp_path / "labels.db"
    with Store(db, create=True) as store:
        make_batch(
            store,
            ["a red circle", "a blue square"],
            ProceduralSource(size=16),
            BatchPlan(k=2),
            "round1",
        )
    messages: list[str] = []

    def admin() -> None:
        time.sleep(0.3)
        with Store(db) as store:
            store.mark_batch_done(store.batch("round1").id)

    thread = threading.Thread(target=admin)
    thread.start()
    t0 = time.monotonic()
    progress = wait_for_batch(db, "round1", poll_seconds=0.05, log=messages.append, port=8600)
    thread.join()
    assert 0.3 <= time.monotonic() - t0 < 10 and progress["tasks"] == 2
    text = "\n".join(messages)
    assert f"artalign label serve --db {db} --host 127.0.0.1 --port 8600" in text
    assert f"artalign label close --db {db} --batch round1" in text
    assert messages[-1] == "batch round1 closed with 0 judgments; continuing"
    with Store(db) as store:
        store.mark_batch_done(store.batch("round1").id, done=False)
    with pytest.raises(ArtalignError, match="was not closed within"):
        wait_for_batch(db, "round1", poll_seconds=0.01, log=lambda _m: None, timeout=0.05)


def test_copy_store_is_a_consistent_copy_with_images(tmp_path):
    from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
    from labeling_app.store import Store

    src = tmp_path / "a.db"
    with Store(src, create=True) as store:
        make_batch(store, ["a red circle"], ProceduralSource(size=16), BatchPlan(k=2), "r1")
    copy_store(src, tmp_path / "b" / "copy.db")
    with Store(tmp_path / "b" / "copy.db") as store:
        task = store.tasks()[0]
        assert store.batch("r1").name == "r1"
        assert all(store.image_path(i).is_file() for i in task.image_ids)
        assert str(tmp_path / "b") in str(store.image_path(task.image_ids[0]))


# ----------------------------------------------------------------------------- label batch --lora
def test_label_batch_with_lora_draws_the_adapted_model(micro_loop, tmp_path):
    import torch

    from base_models.cli_main import main
    from base_models.generator import Generator
    from labeling_app.batch import GeneratorSource

    out, _ = micro_loop
    gen = Generator.from_folder(out / "generator")
    gen.attach_lora()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in gen.lora_parameters():
            p.normal_(0.0, 0.5)
    lora = gen.save_lora(tmp_path / "lora")
    plain = GeneratorSource(str(out / "generator"), steps=2, batch_size=2)
    adapted = GeneratorSource(str(out / "generator"), steps=2, batch_size=2, lora=str(lora))
    ((a, a_settings),) = plain.render(["a red circle"], [3])
    ((b, b_settings),) = adapted.render(["a red circle"], [3])
    assert a != b and b_settings["lora"] == str(lora) and "lora" not in a_settings
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    assert (
        main(
            [
                "label",
                "batch",
                "--db",
                str(tmp_path / "x.db"),
                "--procedural",
                "--prompts",
                str(prompts),
                "--lora",
                str(lora),
            ]
        )
        == 2
    )


# ----------------------------------------------------------------------------- regression banner
def _fig(value, ci, hib):
    return {"value": value, "n": 50, "ci": ci, "higher_is_better": hib}


def test_regression_summary_calls_a_regression_only_when_the_cis_part_on_the_bad_side():
    model = {
        "bias": {
            "bias": {
                "colour.oracle.imbalance": _fig(0.6, [0.5, 0.7], False),  # up: worse, apart
                "shape.oracle.imbalance": _fig(0.35, [0.25, 0.45], False),  # overlaps
                "style.oracle.entropy": _fig(0.9, [0.85, 0.95], True),  # up: better, apart
            }
        },
        "safety": {
            "safety": {
                "flagged": _fig(0.1, [0.05, 0.15], False),
                "recall": _fig(0.2, [0.1, 0.3], True),
            },  # grades the checker
            "i2p": {"skipped": "no checker"},
        },
    }
    base = {
        "bias": {
            "bias": {
                "colour.oracle.imbalance": _fig(0.3, [0.2, 0.4], False),
                "shape.oracle.imbalance": _fig(0.3, [0.2, 0.4], False),
                "style.oracle.entropy": _fig(0.7, [0.6, 0.8], True),
            }
        },
        "safety": {
            "safety": {"flagged": _fig(0.12, None, False), "recall": _fig(0.9, [0.8, 1.0], True)}
        },
    }
    s = regression_summary(model, base)
    assert s["bias"]["verdict"] == "regressed" and s["bias"]["n_figures"] == 3
    assert s["bias"]["regressed"] == ["bias.colour.oracle.imbalance"]
    assert s["bias"]["improved"] == ["bias.style.oracle.entropy"]
    row = s["bias"]["figures"][0]
    assert row["delta"] == pytest.approx(0.3)
    assert row["delta_ci"] == pytest.approx([0.1, 0.5])  # 0.5 - 0.4, 0.7 - 0.2
    assert s["bias"]["figures"][1]["verdict"] == "no significant change"
    # safety: recall is the checker's, not the model's; no CI on one side: not judged
    assert s["safety"]["n_figures"] == 1 and s["safety"]["figures"][0]["verdict"] == "no CI"
    assert s["safety"]["verdict"] == "no significant change"
    assert regression_summary({}, {})["bias"]["verdict"] == "not measured"
    html = render(
        ReportView(
            "t", [Column("model", "a", model), Column("baseline", "b", base)], [], {}, {}, {}
        )
    )
    body = html[html.index("<body>") :]
    assert body.index('id="regression"') < body.index("<h2>Summary")
    assert '<b class="worse">bias: regressed</b> — 1 of 3 figures' in html
    line = "bias.colour.oracle.imbalance: 0.6 [0.5, 0.7] vs 0.3 [0.2, 0.4], Δ +0.3 [0.1, 0.5]"
    assert line in html
    assert "<b>safety: no significant change</b>" in html
    one = render(ReportView("t", [Column("model", "a", model)], [], {}, {}, {}))
    assert 'id="regression"' not in one  # nothing to compare with
