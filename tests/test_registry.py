"""Registries: did-you-mean, decorators, and third-party entry points (a real dist-info on sys.path)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from benchmark.errors import UserError
from benchmark.registry import ALGORITHMS, DOMAINS, Registry, get_condition, parse_conditions


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(UserError, match=r"unknown algorithm 'kot': did you mean 'kto'\?"):
        ALGORITHMS.get("kot")
    with pytest.raises(UserError, match=r"valid domains are .*text"):
        DOMAINS.get("zzzzzz")
    with pytest.raises(UserError, match="did you mean 'noisy-labels'"):
        get_condition("noisy-label")


def test_parse_lists_and_all() -> None:
    assert ALGORITHMS.parse("dpo, ipo") == ["dpo", "ipo"]
    assert set(ALGORITHMS.parse("all")) >= {"sft", "dpo", "ipo", "kto"}
    assert parse_conditions("all")[0] == "default"
    with pytest.raises(UserError):
        ALGORITHMS.parse("dpo,nope")


def test_decorator_registration() -> None:
    reg: Registry = Registry("thing", "prefbench.test-things", {})

    @reg.register("mine")
    class Mine:
        pass

    assert reg.get("mine") is Mine and reg.names() == ["mine"]


def test_entry_point_plugins_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_plugin.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from benchmark.api import Algorithm

        @dataclass
        class Cfg:
            beta: float = 0.1

        class MyAlgo(Algorithm):
            """A third-party algorithm."""
            name = "my-algo"
            Config = Cfg
            requires = frozenset({"offline:pairs"})

            def train(self, ctx, cfg):
                return ctx.domain.make_policy()
    '''))
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[prefbench.algorithms]\nmy-algo = my_plugin:MyAlgo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("algorithm", "prefbench.algorithms", {})
    assert "my-algo" in reg.names()
    assert reg.get("my-algo").__name__ == "MyAlgo"
    sys.modules.pop("my_plugin", None)
