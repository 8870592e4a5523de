"""`artalign label serve`: run the Streamlit labeling app on a preference store.

Checks the store and the port first (so a typo fails with one clear line, not a Streamlit
traceback), then replaces this process with `python -m streamlit run labeling_app/app/main.py`,
so signals (Ctrl-C, SIGTERM, a supervisor's kill) reach the server directly.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from base_models.errors import ArtalignError
from labeling_app.app import MAIN_SCRIPT
from labeling_app.app.settings import ORDERS, AppSettings, load_hotkeys
from labeling_app.store import Store

# Commands of `artalign label`, merged into its group by labeling_app/cli_label.py.
app = typer.Typer()


def check_store(db: Path) -> None:
    """Raise ArtalignError unless `db` is an existing label store (StoreError says why not)."""
    if not db.is_file():
        raise ArtalignError(
            f"--db {db} does not exist; make a store with `artalign label batch --db {db} ...`"
        )
    Store(db).close()


def check_port(host: str, port: int) -> None:
    """Raise ArtalignError if `host:port` cannot be bound (in use, or a bad address)."""
    if not 1 <= port <= 65535:
        raise ArtalignError(f"--port {port} is out of range; use 1-65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ArtalignError(
                f"cannot listen on {host}:{port} ({e.strerror}); pass another --port or --host"
            ) from None


def streamlit_command(host: str, port: int) -> list[str]:
    """The argv that runs the app script with Streamlit (settings travel in the environment)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(MAIN_SCRIPT),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


def _exec(argv: list[str], env: dict[str, str]) -> None:  # replaced in tests
    os.execve(argv[0], argv, env)


@app.command("serve")
def serve(
    db: Annotated[Path, typer.Option(help="The preference store (SQLite file) to label.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    lock_seconds: Annotated[
        int, typer.Option(help="Seconds a served task stays locked to its rater.")
    ] = 300,
    gold_rate: Annotated[
        float, typer.Option(help="Share of gold tasks (known answers) mixed in, 0-1.")
    ] = 0.1,
    order: Annotated[
        str,
        typer.Option(
            help=f"Serving order: {', '.join(ORDERS)} (uncertain: reward-model doubt first)."
        ),
    ] = "fifo",
    ratings: Annotated[
        bool, typer.Option(help="Ask for 1-7 prompt-fidelity and quality ratings per image.")
    ] = False,
    hotkeys: Annotated[
        Path | None,
        typer.Option(
            help="YAML file mapping actions (left, right, tie, both_bad, skip, undo, submit) "
            "to a key or a list of keys; actions not named keep their defaults."
        ),
    ] = None,
    image_px: Annotated[int, typer.Option(help="Display width of each image in pixels.")] = 256,
) -> None:
    """Serve the labeling app (login, pairwise and ranking tasks, admin page) on DB."""
    check_store(db)
    settings = AppSettings(
        db=str(db.resolve()),
        lock_seconds=lock_seconds,
        gold_rate=gold_rate,
        order=order,
        ratings=ratings,
        hotkeys=load_hotkeys(hotkeys),
        image_px=image_px,
    )
    check_port(host, port)
    env = {**os.environ, **settings.to_env()}
    typer.echo(f"labeling app for {db} at http://{host}:{port}  (Ctrl-C stops it)")
    sys.stdout.flush()
    _exec(streamlit_command(host, port), env)
