"""The generic Registry: lookups, collisions, `needs=`, lazy loading of the built-in modules."""

from __future__ import annotations

import sys
import types

import pytest

from base_models.errors import ArtalignError
from base_models.registry import Registry


def test_register_get_and_meta():
    reg = Registry("widget")

    @reg.register("a", colour="red")
    def make_a(size=1):
        return ("a", size)

    assert reg.get("a") is make_a
    assert reg.entry("a").colour == "red"
    assert reg.names() == ["a"] and "a" in reg and "b" not in reg
    with pytest.raises(AttributeError):
        _ = reg.entry("a").weight


def test_unknown_name_lists_the_known_ones():
    reg = Registry("widget")
    reg.add("x", object())
    with pytest.raises(ArtalignError, match=r"unknown widget 'y'; known: x"):
        reg.get("y")


def test_collision_is_an_error_but_the_same_definition_is_not():
    reg = Registry("widget")

    def first():
        return 1

    reg.add("f", first)
    reg.add("f", first)  # the same object again

    def reloaded():
        return 1

    reloaded.__qualname__ = first.__qualname__  # a re-imported module's fresh function
    reg.add("f", reloaded)
    assert reg.get("f") is reloaded

    def other():
        return 2

    with pytest.raises(ValueError, match="widget 'f' is registered twice"):
        reg.add("f", other)


def test_build_checks_needs_and_drops_none():
    reg = Registry("reward", hint=lambda key: f"reward_{key}=DIR")
    reg.add("model", lambda path, device="cpu": (path, device), needs=("path",))
    assert reg.build("model", path="p", device=None) == ("p", "cpu")
    with pytest.raises(ArtalignError, match=r"reward 'model' needs path; set reward_path=DIR"):
        reg.build("model", path=None)
    bare = Registry("r")  # no hint: the message ends at the missing key
    bare.add("m", lambda path: path, needs=("path",))
    with pytest.raises(ArtalignError, match=r"'m' needs path$"):
        bare.build("m", path="")


def test_modules_load_on_first_lookup(monkeypatch):
    reg = Registry("widget", modules=("fake_widgets",))
    imported = []

    def fake_import(name):
        imported.append(name)
        reg.add("lazy", 42)
        return types.ModuleType(name)

    monkeypatch.setattr("base_models.registry.import_module", fake_import)
    assert imported == []  # nothing happens until a lookup
    assert reg.get("lazy") == 42
    assert reg.names() == ["lazy"]
    assert imported == ["fake_widgets"]  # once
    assert "fake_widgets" not in sys.modules
