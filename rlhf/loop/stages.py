"""The loop's stages: which `artalign` command each runs, on which folders, after which stages.

`build_stages(cfg, out)` lists them in order. A stage is data: its name, the stages it reads
from, the command (an `artalign` argv run in-process), what it makes, and how to start it over —
the paths to remove, or the trainer folder whose checkpoint `--resume` continues. Python steps
(copying a label store, waiting for people, writing the report) are `before` / `after` / `action`
callables. The folder layout under OUT is `make demo`'s (data, oracle_test, oracle, oracle_eval,
clip, clip_eval, vae, generator, generator_eval, labels/labels.db, label_sim, label_agreement)
plus reward, ddpo or draft (`aligner`, `also_align`), dpo, eval, eval_<trainer>, round<r>/...
and report.html; `legacy` names the file whose presence shows that an older `make demo`
finished the stage.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlhf.loop.config import LoopConfig


@dataclass
class Stage:
    """One step of the loop (see the module docstring)."""

    name: str
    deps: tuple[str, ...]
    outputs: tuple[Path, ...]
    argv: list[str] = field(default_factory=list)
    legacy: Path | None = None
    resume_dir: Path | None = None
    clean: tuple[Path, ...] = ()
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    action: Callable[[], None] | None = None
    describe: str = ""  # what `action` does, recorded as the marker's command

    @property
    def command(self) -> list[str]:
        return ["artalign", *self.argv] if self.argv else [self.describe or self.name]


@dataclass
class Paths:
    """Where the loop's models and files are, whether it trains them or is given them."""

    out: Path
    generator: Path
    clip: Path
    oracle: Path | None
    prompts: Path
    labels_db: Path  # round 1's store

    def round_dir(self, r: int) -> Path:
        return self.out if r == 1 else self.out / f"round{r}"

    def store(self, r: int) -> Path:
        return self.labels_db if r == 1 else self.round_dir(r) / "labels.db"


def paths_of(cfg: LoopConfig, out: Path) -> Paths:
    given = Path(cfg.labels_db) if cfg.labels_db else None
    return Paths(
        out=out,
        generator=out / "generator" if cfg.train_base else Path(cfg.model),
        clip=out / "clip" if cfg.train_base else Path(cfg.clip),
        oracle=out / "oracle" if cfg.train_base else (Path(cfg.oracle) if cfg.oracle else None),
        prompts=Path(cfg.prompts) if cfg.prompts else out / "labels" / "prompts.txt",
        labels_db=given or out / "labels" / "labels.db",
    )


# ----------------------------------------------------------------------------- store files
SIDECARS = ("", "-wal", "-shm", "-journal", ".images")


def remove_store(db: Path) -> None:
    """Delete a label store with its WAL files and its images folder."""
    for suffix in SIDECARS:
        p = db.with_name(db.name + suffix)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def move_store(src: Path, dst: Path) -> None:
    """Rename a closed store (and its images folder) into place: the database file last."""
    remove_store(dst)
    for suffix in SIDECARS[1:]:
        p = src.with_name(src.name + suffix)
        if p.exists():
            p.rename(dst.with_name(dst.name + suffix))
    src.rename(dst)


def copy_store(src: Path, dst: Path) -> None:
    """A consistent copy of a store (SQLite's backup API, WAL included) and its images."""
    remove_store(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    images = src.with_name(src.name + ".images")
    if images.is_dir():
        shutil.copytree(images, dst.with_name(dst.name + ".images"))


def unjudged_copy(db: Path) -> Path:
    """Where `label_sim` keeps the store as the labels stage left it (database file only)."""
    return db.with_name(db.name + ".unjudged")


def start_from_unjudged(db: Path) -> None:
    """Put the store back as it was before simulated raters judged it, so that a rerun of
    label_sim (killed after its judgments were committed, or with a changed command) writes the
    same judgments again rather than finding no work: the first call keeps a copy of the
    database (written beside it and renamed in), later calls restore it with SQLite's backup
    API, one transaction. The images are left alone: simulated raters add none."""
    keep = unjudged_copy(db)
    if keep.exists():
        src, dst = keep, db
    else:
        src, dst = db, keep.with_name(keep.name + ".tmp")
        dst.unlink(missing_ok=True)
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(dst) as b:
        a.backup(b)
        if dst != db:  # no WAL for the copy: reading it leaves no -wal / -shm files behind
            b.execute("PRAGMA journal_mode=DELETE")
    a.close()
    b.close()
    if dst != db:
        dst.rename(keep)


# ----------------------------------------------------------------------------- the stages
def _base_stages(cfg: LoopConfig, p: Paths) -> list[Stage]:
    """Data set, oracle, CLIP, VAE, UNet and their evaluations: `make demo`'s commands."""
    o, pre, args = p.out, cfg.preset_of, cfg.args_of

    def trainer(name: str, argv: list[str], folder: Path, legacy: Path, deps=()) -> Stage:
        return Stage(
            name,
            tuple(deps),
            (folder,),
            [*argv, "--preset", pre(name), *args(name)],
            legacy=legacy,
            resume_dir=folder,
            clean=(folder,),
        )

    test_n = [
        "--n",
        str(cfg.oracle_test_n),
        "--seed",
        "7",
        "--split",
        "all",
        "--unsafe-share",
        "0.1",
        "--overwrite",
    ]
    return [
        Stage(
            "data",
            (),
            (o / "data",),
            [
                "data",
                "make",
                "--out",
                str(o / "data"),
                "--preset",
                pre("data"),
                "--seed",
                "0",
                "--overwrite",
                *args("data"),
            ],
            legacy=o / "data" / "metadata.jsonl",
            clean=(o / "data",),
        ),
        Stage(
            "oracle_test",
            (),
            (o / "oracle_test",),
            ["data", "make", "--out", str(o / "oracle_test"), *test_n, *args("oracle_test")],
            legacy=o / "oracle_test" / "metadata.jsonl",
            clean=(o / "oracle_test",),
        ),
        trainer(
            "oracle",
            ["oracle", "train", "--out", str(o / "oracle")],
            o / "oracle",
            o / "oracle" / "model.safetensors",
        ),
        Stage(
            "oracle_eval",
            ("oracle", "oracle_test"),
            (o / "oracle_eval",),
            [
                "oracle",
                "score",
                "--model",
                str(o / "oracle"),
                "--data",
                str(o / "oracle_test"),
                "--out",
                str(o / "oracle_eval"),
                *args("oracle_eval"),
            ],
            legacy=o / "oracle_eval" / "metrics.json",
            clean=(o / "oracle_eval",),
        ),
        trainer(
            "clip",
            ["base", "train-clip", "--data", str(o / "data"), "--out", str(o / "clip")],
            o / "clip",
            o / "clip" / "open_clip_model.safetensors",
            ("data",),
        ),
        Stage(
            "clip_eval",
            ("clip",),
            (o / "clip_eval",),
            [
                "base",
                "eval-clip",
                "--model",
                str(o / "clip"),
                "--out",
                str(o / "clip_eval"),
                *args("clip_eval"),
            ],
            legacy=o / "clip_eval" / "metrics.json",
            clean=(o / "clip_eval",),
        ),
        trainer(
            "vae",
            ["base", "train-vae", "--data", str(o / "data"), "--out", str(o / "vae")],
            o / "vae",
            o / "vae" / "metrics.json",
            ("data",),
        ),
        trainer(
            "generator",
            [
                "base",
                "train-unet",
                "--data",
                str(o / "data"),
                "--vae",
                str(o / "vae"),
                "--clip",
                str(o / "clip"),
                "--out",
                str(o / "generator"),
            ],
            o / "generator",
            o / "generator" / "model_index.json",
            ("data", "vae", "clip"),
        ),
        Stage(
            "generator_eval",
            ("generator", "oracle", "clip"),
            (o / "generator_eval",),
            [
                "base",
                "eval-generator",
                "--model",
                str(o / "generator"),
                "--oracle",
                str(o / "oracle"),
                "--clip",
                str(o / "clip"),
                "--out",
                str(o / "generator_eval"),
                *args("generator_eval"),
            ],
            legacy=o / "generator_eval" / "metrics.json",
            clean=(o / "generator_eval",),
        ),
    ]


def _label_stages(
    cfg: LoopConfig, p: Paths, r: int, wait: Callable[[Path, str], None]
) -> list[Stage]:
    """Round r's labeling batch, its judgments (simulated or by people) and their agreement.

    Round 1 writes `labels/labels.db` (built as labels.db.tmp and renamed in, as `make demo`);
    round r >= 2 copies round r-1's store to round<r>/labels.db and adds batch "round<r>" of the
    generator's images with round r-1's DDPO adapters attached, so its reward model trains on
    every round's labels.
    """
    rd, db, batch = p.round_dir(r), p.store(r), f"round{r}"
    tmp = db.with_name(db.name + ".tmp")
    gen_deps = ("generator",) if cfg.train_base else ()
    prompt_deps = ("prompts",) if cfg.prompts is None else ()
    argv = [
        "label",
        "batch",
        "--db",
        str(tmp),
        "--model",
        str(p.generator),
        "--prompts",
        str(p.prompts),
        "--k",
        str(cfg.k),
        "--kinds",
        cfg.kinds,
        "--overlap",
        str(cfg.overlap),
        "--steps",
        str(cfg.label_steps),
        "--guidance",
        str(cfg.label_guidance),
        "--batch-name",
        batch,
    ]
    deps: tuple[str, ...] = (*gen_deps, *prompt_deps)

    def before() -> None:
        unjudged_copy(db).unlink(missing_ok=True)  # new labels: label_sim keeps a new copy
        if r == 1:
            remove_store(tmp)
        else:  # round r-1's store holds its judgments once its aligner ran (<- reward <- labels)
            copy_store(p.store(r - 1), tmp)

    if r > 1:
        argv += [
            "--lora",
            str(p.round_dir(r - 1) / cfg.aligner / "lora"),
            "--seed",
            str((r - 1) * 1_000_000),
        ]
        deps += (_prefix(r - 1) + cfg.aligner,)
    pre = _prefix(r)
    stages = [
        Stage(
            pre + "labels",
            deps,
            (db,),
            [*argv, *cfg.args_of("labels")],
            legacy=db if r == 1 else None,
            before=before,
            after=lambda: move_store(tmp, db),
        )
    ]
    if cfg.human:
        stages.append(
            Stage(
                pre + "label_human",
                (pre + "labels",),
                (db,),
                action=lambda: wait(db, batch),
                describe=f"people label batch {batch} of {db}",
            )
        )
    else:
        sim_out = rd / "label_sim" / "metrics.json"
        oracle_dep = ("oracle",) if cfg.train_base else ()
        stages.append(
            Stage(
                pre + "label_sim",
                (pre + "labels", *oracle_dep),
                (sim_out,),
                [
                    "label",
                    "simulate",
                    "--db",
                    str(db),
                    "--profile",
                    cfg.rater_profile,
                    "--oracle",
                    str(p.oracle),
                    "--n",
                    str(cfg.n_judgments),
                    "--batch",
                    batch,
                    "--out",
                    str(sim_out),
                    *cfg.args_of("label_sim"),
                ],
                legacy=sim_out if r == 1 else None,
                before=lambda: start_from_unjudged(db),
            )
        )
    agree = rd / "label_agreement" / "metrics.json"
    stages.append(
        Stage(
            pre + "label_agreement",
            (stages[-1].name,),
            (agree,),
            [
                "label",
                "agreement",
                "--db",
                str(db),
                "--batch",
                batch,
                "--out",
                str(agree),
                *cfg.args_of("label_agreement"),
            ],
            legacy=agree if r == 1 else None,
        )
    )
    return stages


def _prefix(r: int) -> str:
    return "" if r == 1 else f"round{r}."


def _align_stages(cfg: LoopConfig, p: Paths, r: int, judged: str | None) -> list[Stage]:
    """Round r's reward model, its aligner (`cfg.aligner`: DDPO or DRaFT; in round 1 also DPO)
    and their evaluations; `judged` is the stage that finished the round's judgments (None: a
    given label store)."""
    rd, pre, db = p.round_dir(r), _prefix(r), p.store(r)
    labels = (judged,) if judged else ()
    base = ("generator",) if cfg.train_base else ()
    clip_dep = ("clip",) if cfg.train_base else ()
    aligner = cfg.aligner
    reward, aligned = rd / "reward", rd / aligner
    stages = [
        Stage(
            pre + "reward",
            (*labels, *clip_dep),
            (reward,),
            [
                "reward",
                "train",
                "--data",
                str(db),
                "--backbone",
                str(p.clip),
                "--backbone-kind",
                cfg.clip_kind,
                "--out",
                str(reward),
                "--preset",
                cfg.preset_of("reward"),
                *cfg.args_of("reward"),
            ],
            clean=(reward,),
        ),
    ]
    init = [f"init_lora={p.round_dir(r - 1) / aligner / 'lora'}"] if r > 1 else []
    prev = (_prefix(r - 1) + aligner,) if r > 1 else ()
    prompt_deps = ("prompts",) if cfg.prompts is None else ()
    deps = (pre + "reward", *base, *prompt_deps)
    stages.append(
        _aligner_stage(cfg, p, pre + aligner, aligner, aligned, reward, (*deps, *prev), init)
    )
    stages.append(
        _eval_stage(
            cfg, p, pre + "eval", rd / "eval", aligned, reward, (pre + aligner, pre + "reward")
        )
    )
    for other in cfg.also_align if r == 1 else ():  # beside the aligner, for the report
        folder = p.out / other
        stages.append(_aligner_stage(cfg, p, other, other, folder, reward, deps, []))
        stages.append(
            _eval_stage(
                cfg, p, f"eval_{other}", p.out / f"eval_{other}", folder, reward, (other, "reward")
            )
        )
    if r == 1 and cfg.dpo:
        dpo = p.out / "dpo"
        stages.append(
            Stage(
                "dpo",
                (*labels, *base),
                (dpo,),
                [
                    "align",
                    "dpo",
                    "--out",
                    str(dpo),
                    "--model",
                    str(p.generator),
                    "--db",
                    str(db),
                    "--preset",
                    cfg.preset_of("dpo"),
                    *cfg.args_of("dpo"),
                ],
                resume_dir=dpo,
                clean=(dpo,),
            )
        )
        if cfg.eval_dpo:
            stages.append(
                _eval_stage(cfg, p, "eval_dpo", p.out / "eval_dpo", dpo, reward, ("dpo", "reward"))
            )
    return stages


def _aligner_stage(
    cfg: LoopConfig,
    p: Paths,
    name: str,
    trainer: str,
    out: Path,
    reward: Path,
    deps: tuple[str, ...],
    init: list[str],
) -> Stage:
    """`align ddpo|draft` on the round's reward model (resumable from its checkpoint)."""
    argv = [
        "align",
        trainer,
        "--out",
        str(out),
        "--model",
        str(p.generator),
        "--prompts",
        str(p.prompts),
        "--reward",
        "reward_model",
        "--reward-path",
        str(reward),
        "--preset",
        cfg.preset_of(trainer),
        *init,
        *cfg.args_of(trainer),
    ]
    return Stage(name, deps, (out,), argv, resume_dir=out, clean=(out,))


def _eval_stage(
    cfg: LoopConfig, p: Paths, name: str, out: Path, run: Path, reward: Path, deps: tuple[str, ...]
) -> Stage:
    """`eval run`: the base model with the run's adapters vs the base model, same seeds."""
    argv = [
        "eval",
        "run",
        "--model",
        str(p.generator),
        "--lora",
        str(run / "lora"),
        "--baseline",
        str(p.generator),
        "--suite",
        cfg.eval_suite,
        "--out",
        str(out),
        "--clip",
        str(p.clip),
        "--reward",
        str(reward),
        "--cache-dir",
        str(p.out / "cache"),
        "--n-boot",
        str(cfg.n_boot),
        "--overwrite",
    ]
    if p.oracle is not None:
        argv += ["--oracle", str(p.oracle), "--rater", cfg.rater_profile]
    if cfg.train_base:
        argv += ["--reference", str(p.out / "data")]
        deps += ("oracle", "clip", "data")
    stage_key = name if name.startswith("eval_") else "eval"
    return Stage(name, deps, (out,), [*argv, *cfg.args_of(stage_key)], clean=(out,))


def build_stages(
    cfg: LoopConfig, out: Path, wait: Callable[[Path, str], None], report: Callable[[], None]
) -> list[Stage]:
    """Every stage of the loop in the order it runs. `wait(db, batch)` blocks until people
    have labeled a batch (--human); `report()` writes OUT/report.html and OUT/summary.json."""
    p = paths_of(cfg, out)
    stages = _base_stages(cfg, p) if cfg.train_base else []
    if cfg.prompts is None:
        stages.append(
            Stage(
                "prompts",
                (),
                (p.prompts,),
                [
                    "data",
                    "prompts",
                    "--out",
                    str(p.prompts),
                    "--n",
                    str(cfg.n_prompts),
                    "--seed",
                    str(cfg.prompt_seed),
                    "--objects",
                    cfg.prompt_objects,
                    *cfg.args_of("prompts"),
                ],
                legacy=p.prompts,
            )
        )
    for r in range(1, cfg.rounds + 1):
        judged = None  # round 1 on a given label store: nothing to label
        if r > 1 or cfg.labels_db is None:
            labels = _label_stages(cfg, p, r, wait)
            stages += labels
            judged = labels[1].name  # label_sim or label_human
        stages += _align_stages(cfg, p, r, judged)
    evals = tuple(s.name for s in stages if s.name.split(".")[-1] in ("eval", "eval_dpo"))
    what = f"write report.html and summary.json of {', '.join(evals)}"  # changes with the rounds
    stages.append(
        Stage(
            "report",
            evals,
            (out / "report.html", out / "summary.json"),
            action=report,
            describe=what,
        )
    )
    return stages
