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


def test_a_name_registered_twice_or_a_wrong_base_is_refused() -> None:
    from baselines.dpo import DPO

    class MyDPO(DPO):
        pass

    with pytest.raises(UserError, match=r"algorithm 'dpo' is already registered \(baselines.dpo:DPO\)"):
        ALGORITHMS.add("dpo", MyDPO)
    ALGORITHMS.add("dpo", ALGORITHMS.get("dpo"))  # the same object again is harmless

    class NotAnAlgorithm:
        name = "test-not-an-algorithm"

    with pytest.raises(UserError, match=r"not a subclass of benchmark\.api\.Algorithm"):
        ALGORITHMS.add(NotAnAlgorithm.name, NotAnAlgorithm)
    assert NotAnAlgorithm.name not in ALGORITHMS
    with pytest.raises(UserError, match=r"not a subclass of benchmark\.domain\.Domain"):
        DOMAINS.add("test-not-a-domain", DPO)


def test_config_validation_is_a_user_error() -> None:
    from benchmark.runner import CellRequest, resolve

    with pytest.raises(UserError, match=r"flip rate label_smoothing must be in \[0, 0.5\), got 0.5"):
        resolve(CellRequest("dpo", "text", sets=("loss_type=robust", "label_smoothing=0.5")))
    with pytest.raises(UserError, match="loss_type must be one of sigmoid, hinge, robust"):
        resolve(CellRequest("dpo", "text", sets=("loss_type=ipo",)))


def test_unknown_loss_type_raises_instead_of_falling_through() -> None:
    import torch

    from baselines.dpo import DPOConfig, preference_loss
    from benchmark.objectives import robust_dpo_loss

    cfg = DPOConfig()
    cfg.loss_type = "exo_pair"  # set after validation, as a programmatic caller could
    with pytest.raises(ValueError, match="unknown DPO loss_type 'exo_pair'"):
        preference_loss(torch.zeros(2), cfg)
    with pytest.raises(ValueError, match="flip rate"):
        robust_dpo_loss(torch.zeros(2), 0.1, 0.5)
