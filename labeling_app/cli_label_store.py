"""`artalign label batch | export | import | status | close | users ...`: the store's commands.

Thin: parse, call the library (batch.py, exchange/, store/), print. These commands run with
file-system access to the database, so they act as its admin: they call the store's admin
actions (`mark_batch_done`, `make_invite`, `add_rater`, `unlock`) with `actor=None`, the local
operator, which needs no admin account (the app passes its logged-in rater instead). Names and
passwords follow the store's rules (store/auth.py `check_name`, `check_password`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from base_models.errors import ArtalignError
from base_models.io_utils import check_new_output
from labeling_app.batch import (
    BatchPlan,
    GeneratorSource,
    ProceduralSource,
    make_batch,
    parse_kinds,
    read_prompt_file,
)
from labeling_app.exchange import export_labels, import_labels
from labeling_app.store import SYSTEM, Store

# Commands of `artalign label`, merged into its group by labeling_app/cli_label.py.
app = typer.Typer()

Db = Annotated[Path, typer.Option(help="The label store (SQLite file; images beside it).")]
FORMAT_HELP = "pickapic (parquet) or rankings (JSONL); default: from the file extension."
users_app = typer.Typer(help="Add, list and unlock raters and admins.", no_args_is_help=True)


def _format(fmt: str | None, path: Path) -> str:
    if fmt is not None:
        return fmt
    by_ext = {".parquet": "pickapic", ".jsonl": "rankings"}
    if path.suffix not in by_ext:
        raise ArtalignError(f"cannot tell the format of {path.name}; pass --format")
    return by_ext[path.suffix]


@app.command("batch")
def batch_cmd(
    db: Db,
    prompts: Annotated[Path, typer.Option(help="Prompt file: one per line, or .jsonl with text.")],
    model: Annotated[str | None, typer.Option(help="Stable Diffusion folder.")] = None,
    lora: Annotated[
        Path | None,
        typer.Option(help="LoRA folder to attach to --model (e.g. an aligned run's lora/)."),
    ] = None,
    procedural: Annotated[
        bool, typer.Option(help="Draw images with the procedural world (no model needed).")
    ] = False,
    k: Annotated[int, typer.Option(help="Images per prompt.")] = 4,
    kinds: Annotated[str, typer.Option(help="Task kinds: pair, rank or pair,rank.")] = "pair",
    overlap: Annotated[int, typer.Option(help="Raters per task.")] = 1,
    pairs_per_prompt: Annotated[
        int | None, typer.Option(help="Pairs per prompt (default: all k-choose-2).")
    ] = None,
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 50,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance (1 = off).")] = 7.5,
    eta: Annotated[float, typer.Option(help="DDIM eta.")] = 0.0,
    seed: Annotated[int, typer.Option(help="First seed; image j of prompt i: S+i*k+j.")] = 0,
    batch_name: Annotated[str | None, typer.Option(help="Batch name (default: dated).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per UNet batch.")] = 8,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
    size: Annotated[int, typer.Option(help="Procedural image side in pixels.")] = 32,
    mistake_rate: Annotated[
        float, typer.Option(help="Procedural: share of images that get one attribute wrong.")
    ] = 0.5,
    gold_pairs: Annotated[
        int, typer.Option(help="Procedural: gold pairs (faithful vs mistaken image) to add.")
    ] = 0,
) -> None:
    """Make k images per prompt (seeds and settings recorded) and their pair / rank tasks."""
    if procedural == (model is not None):
        raise ArtalignError("pass exactly one of --model DIR or --procedural")
    if lora is not None and model is None:
        raise ArtalignError("--lora attaches adapters to --model; pass --model DIR with it")
    if lora is not None and not lora.is_dir():
        raise ArtalignError(f"--lora {lora} is not a folder; pass a saved LoRA folder")
    plan = BatchPlan(
        k=k,
        kinds=parse_kinds(kinds),
        overlap=overlap,
        pairs_per_prompt=pairs_per_prompt,
        seed=seed,
        gold_pairs=gold_pairs,
    )
    plan.check()
    texts = read_prompt_file(prompts)
    name = batch_name or time.strftime("batch-%Y%m%d-%H%M%S")
    if procedural:
        source = ProceduralSource(size=size, mistake_rate=mistake_rate)
    else:
        # lazy: torch, kept out of `artalign --help`
        from base_models.generator import check_sampling_args

        if not Path(model).is_dir():
            raise ArtalignError(f"--model {model} is not a folder; pass a Stable Diffusion folder")
        check_sampling_args(len(texts), steps, guidance, eta, batch_size, max_steps=1000)
        source = GeneratorSource(
            model,
            lora=str(lora) if lora is not None else None,
            steps=steps,
            guidance=guidance,
            eta=eta,
            batch_size=batch_size,
            device=device,
        )
    with Store(db, create=True) as store:
        batch_id = make_batch(store, texts, source, plan, name, {"prompts": str(prompts)})
        n_tasks = len(store.tasks(batch_id))
    typer.echo(
        f"batch {name!r} (id {batch_id}): {len(texts)} prompts x {k} images, "
        f"{n_tasks} tasks, overlap {overlap} -> {db}"
    )


@app.command("export")
def export_cmd(
    db: Db,
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .jsonl).")],
    format: Annotated[str | None, typer.Option(help=FORMAT_HELP)] = None,
    batch: Annotated[str | None, typer.Option(help="Only this batch (by name).")] = None,
    include_gold: Annotated[bool, typer.Option(help="Also export gold-task answers.")] = False,
    keep_both_bad: Annotated[
        bool,
        typer.Option(
            help="Pick-a-Pic: keep 'both bad' answers as 0.5/0.5 rows flagged both_bad "
            "(left out by default: label-only loaders read them as ties)."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Write judgments as Pick-a-Pic parquet or ImageReward-style JSONL rankings (atomically)."""
    fmt = _format(format, out)
    check_new_output(out, overwrite)
    with Store(db) as store:
        s = export_labels(
            store, out, fmt, batch=batch, include_gold=include_gold, keep_both_bad=keep_both_bad
        )
    left_out = (
        f"; left out {s.both_bad_left_out} both-bad answers (--keep-both-bad keeps them)"
        if fmt == "pickapic" and not keep_both_bad
        else ""
    )
    typer.echo(f"wrote {s.rows} {'pairs' if fmt == 'pickapic' else 'rankings'} to {out}{left_out}")


@app.command("import")
def import_cmd(
    db: Db,
    in_: Annotated[Path, typer.Option("--in", help="Pick-a-Pic parquet or JSONL rankings.")],
    format: Annotated[str | None, typer.Option(help=FORMAT_HELP)] = None,
    batch_name: Annotated[
        str | None, typer.Option(help="Name of the new batch (default: import-FILE).")
    ] = None,
) -> None:
    """Read public or exported preference data into a new batch of the store."""
    fmt = _format(format, in_)
    with Store(db, create=True) as store:
        s = import_labels(store, in_, fmt, batch_name=batch_name)
    typer.echo(
        f"imported {s.judgments} judgments on {s.tasks} tasks (batch id {s.batch_id}), "
        f"{s.raters} new raters, {s.skipped} rows skipped"
    )


@app.command("status")
def status_cmd(db: Db) -> None:
    """Progress per batch and judgments per rater."""
    with Store(db) as store:
        batches = store.batches()
        if not batches:
            typer.echo("no batches yet; make one with `artalign label batch`")
        typer.echo(
            f"{'batch':<28} {'state':<6} {'tasks':>6} {'needed':>7} {'done':>6} "
            f"{'%':>6} {'gold':>5}"
        )
        for b in batches:
            p = store.progress(SYSTEM, b.id)
            pct = 100.0 * p["done"] / p["needed"] if p["needed"] else 100.0
            state = "closed" if b.done else "open"
            typer.echo(
                f"{b.name:<28} {state:<6} {p['tasks']:>6} {p['needed']:>7} {p['done']:>6} "
                f"{pct:>5.1f}% {p['gold_judgments']:>5}"
            )
        totals = store.progress(SYSTEM)["per_rater"]
        gold = store.gold_accuracy()
        typer.echo("\nrater                 role   judgments  gold right")
        for r in store.raters():
            right, n = gold.get(r.id, (0, 0))
            acc = f"{right}/{n}" if n else "-"
            typer.echo(f"{r.name:<21} {r.role:<6} {totals.get(r.id, 0):>9}  {acc:>10}")


@app.command("close")
def close_cmd(
    db: Db,
    batch: Annotated[str, typer.Option(help="Batch name.")],
    reopen: Annotated[bool, typer.Option(help="Open the batch again instead.")] = False,
) -> None:
    """Stop serving a batch's tasks (or serve them again with --reopen)."""
    with Store(db) as store:
        store.mark_batch_done(store.batch(batch).id, done=not reopen, actor=None)
    typer.echo(f"batch {batch!r} {'reopened' if reopen else 'closed'}")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    db: Db,
    role: Annotated[str, typer.Option(help="rater or admin.")] = "rater",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from the first line of stdin.")
    ] = False,
    invite: Annotated[bool, typer.Option(help="Print a single-use invite link instead.")] = False,
    base_url: Annotated[
        str, typer.Option(help="The app's address, for the invite link.")
    ] = "http://localhost:8501",
    ttl_days: Annotated[float, typer.Option(help="Days before the invite expires.")] = 7.0,
) -> None:
    """Add a rater or admin, with a password from stdin or an invite link.

    A name still waiting on an expired invite gets a new link (with the same role).
    """
    if password_stdin == invite:
        raise ArtalignError("pass exactly one of --password-stdin or --invite")
    with Store(db, create=True) as store:
        if invite:  # a taken name is refused by the store (an invite is no password reset)
            token = store.make_invite(name, role=role, ttl_seconds=ttl_days * 86400, actor=None)
            typer.echo(f"invite for {name} ({role}), valid {ttl_days:g} days:")
            typer.echo(f"{base_url.rstrip('/')}/?invite={token}")
            return
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ArtalignError("no password on stdin; pipe one in, e.g. `echo PW | ...`")
        rater_id = store.add_rater(name, password, role=role, actor=None)
    typer.echo(f"added {role} {name!r} (id {rater_id})")


@users_app.command("list")
def users_list(db: Db) -> None:
    """Every rater with role, state and judgment count."""
    with Store(db) as store:
        counts = store.progress(SYSTEM)["per_rater"]
        now = time.time()
        typer.echo(f"{'id':>4} {'name':<20} {'role':<6} {'state':<12} {'judgments':>9}")
        for r in store.raters():
            state = (
                "locked"
                if r.locked_until and r.locked_until > now
                else "invited"
                if not r.has_password
                else "active"
                if r.active
                else "inactive"
            )
            typer.echo(f"{r.id:>4} {r.name:<20} {r.role:<6} {state:<12} {counts.get(r.id, 0):>9}")


@users_app.command("unlock")
def users_unlock(name: Annotated[str, typer.Argument(help="Login name.")], db: Db) -> None:
    """Lift a lockout after too many wrong passwords."""
    with Store(db) as store:
        store.unlock(store.rater_by_name(name).id, actor=None)
    typer.echo(f"unlocked {name!r}")


app.add_typer(users_app, name="users")
