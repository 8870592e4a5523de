"""`artalign label serve`: its checks, the command it runs, the settings and hotkeys it passes."""

from __future__ import annotations

import json
import socket

import pytest

from base_models.cli_main import main
from base_models.errors import ArtalignError
from labeling_app import cli_label_serve as cli_serve
from labeling_app.app import MAIN_SCRIPT
from labeling_app.app.hotkeys import button_label, installer_html, key_map
from labeling_app.app.settings import (
    DEFAULT_HOTKEYS,
    ENV_VAR,
    AppSettings,
    load_hotkeys,
)


@pytest.fixture
def launched(monkeypatch):
    """Capture what `serve` would exec instead of replacing the test process."""
    calls = []
    monkeypatch.setattr(cli_serve, "_exec", lambda argv, env: calls.append((argv, env)))
    return calls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_streamlit_with_settings_in_env(store_env, tmp_path, launched, capsys):
    keys = tmp_path / "keys.yaml"
    keys.write_text("tie: [x, '0']\nskip: []\n")
    port = free_port()
    code = main(
        [
            "label",
            "serve",
            "--db",
            str(store_env.db),
            "--port",
            str(port),
            "--lock-seconds",
            "60",
            "--gold-rate",
            "0.25",
            "--order",
            "random",
            "--ratings",
            "--hotkeys",
            str(keys),
        ]
    )
    assert code == 0
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out
    ((argv, env),) = launched
    assert argv[1:5] == ["-m", "streamlit", "run", str(MAIN_SCRIPT)]
    assert argv[argv.index("--server.port") + 1] == str(port)
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert argv[argv.index("--browser.gatherUsageStats") + 1] == "false"
    settings = AppSettings.from_env(env)
    assert settings.db == str(store_env.db.resolve())
    assert (settings.lock_seconds, settings.gold_rate, settings.order) == (60, 0.25, "random")
    assert settings.ratings is True
    assert settings.hotkeys["tie"] == ("x", "0")
    assert settings.hotkeys["skip"] == ()
    assert settings.hotkeys["left"] == DEFAULT_HOTKEYS["left"]


@pytest.mark.parametrize(
    "content, message", [(None, "does not exist"), (b"not sqlite" * 64, "not a label store")]
)
def test_serve_refuses_a_db_that_is_not_a_store(tmp_path, launched, capsys, content, message):
    db = tmp_path / "labels.db"
    if content is not None:
        db.write_bytes(content)
    assert main(["label", "serve", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert launched == []


def test_serve_refuses_bad_options(store_env, tmp_path, launched, capsys):
    assert main(["label", "serve", "--db", str(store_env.db), "--order", "oldest"]) == 2
    assert "order 'oldest' is unknown" in capsys.readouterr().err
    clash = tmp_path / "clash.yaml"
    clash.write_text("tie: ['1']\n")  # '1' is already left's
    assert main(["label", "serve", "--db", str(store_env.db), "--hotkeys", str(clash)]) == 2
    assert "bound to both 'left' and 'tie'" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["label", "serve", "--db", str(store_env.db), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert launched == []


def test_hotkey_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("jump: [j]\n")
    with pytest.raises(ArtalignError, match="unknown action"):
        load_hotkeys(bad)
    with pytest.raises(ArtalignError, match="does not exist"):
        load_hotkeys(tmp_path / "none.yaml")
    bad.write_text("- just a list\n")
    with pytest.raises(ArtalignError, match="must map actions"):
        load_hotkeys(bad)


def test_settings_env_round_trip_and_errors():
    settings = AppSettings(db="/x/labels.db", gold_rate=0.5, hotkeys=load_hotkeys(None))
    assert AppSettings.from_env(settings.to_env()) == settings
    with pytest.raises(ArtalignError, match=ENV_VAR):
        AppSettings.from_env({})
    with pytest.raises(ArtalignError, match="malformed"):
        AppSettings.from_env({ENV_VAR: json.dumps({"db": "x", "colour": "red"})})
    with pytest.raises(ArtalignError, match="gold rate"):
        AppSettings(db="x", gold_rate=1.5)


def test_button_labels_and_key_map_agree():
    hotkeys = load_hotkeys(None)
    assert button_label("left", hotkeys) == "Left (← / 1)"
    assert button_label("skip", {**hotkeys, "skip": ()}) == "Skip"
    mapping = key_map(hotkeys)
    assert mapping["ArrowRight"] == "Right" and mapping["2"] == "Right"
    assert mapping["Enter"] == "Submit ranking"
    # single characters are lower-cased, as the listener lower-cases e.key
    assert key_map({"tie": ("T",)}) == {"t": "Tie"}
    html = installer_html(hotkeys)
    assert json.dumps(mapping) in html and "window.parent" in html
