"""``bench export --format trl``: the text domain's pairs, tokenizer and reference for TRL (smoke preset)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from benchmark.progress import Progress
from benchmark.registry import get_condition
from benchmark.runner import CellRequest, make_instance, prepare_domain, resolve
from domains.text.domain import TextDomain

pytest.importorskip("datasets", reason="the trl extra (pip install -e '.[trl]')")


@pytest.fixture(scope="module")
def domain(cache) -> TextDomain:
    cell = resolve(CellRequest("dpo", "text", preset="smoke"))
    d, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    return d


@pytest.fixture(scope="module")
def exported(domain: TextDomain, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI's export of the smoke text domain (in-process: the prepared domain is reused)."""
    from benchmark.cli import app

    out = tmp_path_factory.mktemp("trl") / "export"
    res = CliRunner().invoke(app, ["export", "-d", "text", "-f", "trl", "-p", "smoke", "-o", str(out), "-q",
                                   "--cache", str(cache_dir)])
    assert res.exit_code == 0, res.output
    return out


def test_rows_are_the_pairs_dpo_trains_on(domain: TextDomain, exported: Path) -> None:
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    ds = load_from_disk(str(exported))["train"]
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    cell = resolve(CellRequest("dpo", "text", preset="smoke"))
    instance, seals, _ = make_instance(domain, get_condition("default"), cell.budget, 0, torch.device("cpu"))
    seals.close()
    pairs = instance.offline.pairs
    assert len(ds) == len(pairs) > 0
    tok = AutoTokenizer.from_pretrained(exported / "tokenizer")
    for i, row in enumerate(ds):
        assert all(isinstance(row[k], str) for k in ("prompt", "chosen", "rejected"))
        ctx = pairs.contexts.prompt_ids[i][pairs.contexts.prompt_mask[i].bool()]
        assert tok(row["prompt"], add_special_tokens=False)["input_ids"] == ctx.tolist()
        for side, samples in (("chosen", pairs.chosen), ("rejected", pairs.rejected)):
            want = samples.tokens[i][samples.mask[i].bool()].tolist()
            # TRL tokenizes prompt + completion as one string: the completion's ids must follow the prompt's
            assert tok(row["prompt"] + row[side], add_special_tokens=False)["input_ids"] == ctx.tolist() + want


def test_reference_loads_with_transformers_and_gives_our_logits(domain: TextDomain, exported: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(exported / "reference").eval()
    ids = torch.tensor([[1, 7, 8, 9, 3, 10, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, domain.reference.model(input_ids=ids).logits)
    assert "prompt, chosen, rejected" in (exported / "README.txt").read_text()


def test_trl_dpo_trainer_runs_two_steps_on_the_export(exported: Path, tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
                     report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, bf16=False,
                     max_length=24, disable_tqdm=True)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(exported / "reference"), args=args,
                         train_dataset=load_from_disk(str(exported))["train"],
                         processing_class=AutoTokenizer.from_pretrained(exported / "tokenizer"))
    out = trainer.train()
    assert out.global_step == 2 and torch.isfinite(torch.tensor(out.training_loss))


def test_unsupported_combination_is_one_line(home: Path) -> None:
    env = dict(os.environ, COLUMNS="200")
    bad = subprocess.run([sys.executable, "-m", "benchmark.cli", "export", "-d", "robot", "-f", "trl", "-p", "smoke",
                          "-o", str(home / "x")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--format trl exports --domain text" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_reexport_overwrites_its_own_files_but_not_foreign_ones(domain: TextDomain, exported: Path,
                                                                cache_dir: Path) -> None:
    from benchmark.cli import app

    args = ["export", "-d", "text", "-f", "trl", "-p", "smoke", "-o", str(exported), "-q", "--cache", str(cache_dir)]
    assert CliRunner().invoke(app, args).exit_code == 0  # an earlier trl export is ours to replace
    (exported / "notes.md").write_text("mine")
    try:
        assert CliRunner().invoke(app, args).exit_code == 2
    finally:
        (exported / "notes.md").unlink()


def test_missing_datasets_is_a_one_line_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.errors import UserError
    from benchmark.export import check_format

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(UserError, match=r"pip install -e '\.\[trl\]'"):
        check_format("trl", "text")
