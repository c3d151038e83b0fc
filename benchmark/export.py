"""Export a domain's generated offline data for other tools (``bench export``).

``minari``: the D4RL-layout trajectories of a sequential domain's offline pool (observations,
actions, rewards, terminals, timeouts, infos/qpos, infos/qvel; ``OfflinePool.trajectories``)
become Minari datasets, one per (task, behaviour quality), named
``prefbench/<domain>-<task>/<quality>-v0`` and loadable with ``minari.load_dataset`` when
``MINARI_DATASETS_PATH`` points at the output directory. D4RL's reference scores (random and
expert returns) travel as Minari's ``ref_min_score`` / ``ref_max_score``.

The trajectories dict (see ``domains/robot``) holds per-step arrays plus ``task``, ``quality``
and ``episode`` ids, the names ``tasks`` / ``qualities``, true widths ``qpos_dim`` /
``qvel_dim`` per task (qpos/qvel are zero-padded), and ``ref_scores`` ``[n_tasks, 2]``.

``trl``: a text domain's labelled offline preference pairs under a condition (exactly those that
our ``dpo`` trains on: :func:`benchmark.data.build_offline_data`, which does not depend on the
cell's seed) as a 🤗 ``datasets`` ``DatasetDict`` with a ``train`` split of string columns
``prompt`` / ``chosen`` / ``rejected`` (TRL's standard, non-conversational preference format),
plus the domain's tokenizer (``tokenizer/``) and reference model (``reference/``), both
``save_pretrained``, and a README.txt. Needs the ``trl`` extra (``pip install -e '.[trl]'``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.domain import Domain
from benchmark.errors import UserError

FORMATS = ("minari", "trl")
#: the domains each format exports (a one-line error names them for any other)
FORMAT_DOMAINS = {"minari": ("robot",), "trl": ("text",)}
#: the top-level names each format writes into --out (an earlier export of the same format may be overwritten)
FORMAT_NAMES = {"minari": ("prefbench",), "trl": ("dataset_dict.json", "train", "tokenizer", "reference", "README.txt")}


def _episodes(traj: dict[str, Any], rows: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """Episode dicts (Minari's EpisodeBuffer fields) from the steps ``rows`` of the trajectories."""
    eps = []
    ep_ids = traj["episode"][rows]
    for e in torch.unique_consecutive(ep_ids).tolist():
        r = rows[ep_ids == e]
        task = int(traj["task"][r[0]])
        nq, nv = traj["qpos_dim"][task], traj["qvel_dim"][task]
        obs = torch.cat([traj["observations"][r], traj["next_observations"][r[-1:]]]).numpy().astype(np.float64)
        qpos, qvel = traj["infos/qpos"][r, :nq].numpy(), traj["infos/qvel"][r, :nv].numpy()
        succ = traj["infos/success"][r].numpy()
        eps.append({
            "observations": obs, "actions": traj["actions"][r].numpy().astype(np.float32),
            "rewards": traj["rewards"][r].numpy().astype(np.float64),
            "terminations": traj["terminals"][r].numpy(), "truncations": traj["timeouts"][r].numpy(),
            # Minari stores one info per observation: repeat the last step's for the final one
            "infos": {"qpos": np.concatenate([qpos, qpos[-1:]]), "qvel": np.concatenate([qvel, qvel[-1:]]),
                      "success": np.concatenate([succ, succ[-1:]])},
        })
    return eps


def export_minari(domain: Domain, out_dir: Path) -> list[str]:
    """Write one Minari dataset per (task, quality) under ``out_dir``; returns the dataset ids."""
    traj = domain.pool.trajectories
    if traj is None:
        raise UserError(f"domain {domain.name} has no trajectories to export as Minari datasets; "
                        "use a sequential domain (e.g. --domain robot)")
    import gymnasium as gym
    from minari import create_dataset_from_buffers
    from minari.data_collector.episode_buffer import EpisodeBuffer

    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = str(out_dir.resolve())
    obs_dim, act_dim = traj["observations"].shape[1], traj["actions"].shape[1]
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
    act_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
    ids = []
    for k, task in enumerate(traj["tasks"]):
        for j, quality in enumerate(traj["qualities"]):
            rows = torch.nonzero((traj["task"] == k) & (traj["quality"] == j)).flatten()
            if len(rows) == 0:
                continue
            dataset_id = f"prefbench/{domain.name}-{task}/{quality}-v0"
            buffers = [EpisodeBuffer(id=i, **ep) for i, ep in enumerate(_episodes(traj, rows))]
            lo, hi = (float(x) for x in traj["ref_scores"][k])
            _remove_existing(out_dir, dataset_id)
            with warnings.catch_warnings():  # no env spec / author email: expected here
                warnings.simplefilter("ignore", UserWarning)
                ds = create_dataset_from_buffers(
                    dataset_id, buffers, observation_space=obs_space, action_space=act_space,
                    algorithm_name=f"prefbench {quality} behaviour policy", author="prefbench",
                    description=f"prefbench {domain.name} domain, task {task}, {quality} episodes in D4RL's "
                                "layout (normalised score: 0 = random, 100 = expert return)",
                )
            # Minari keeps reference scores only with an eval env spec; ours are measured: store them
            # so that minari.get_normalized_score works
            ds.storage.update_metadata({"ref_min_score": lo, "ref_max_score": hi})
            ids.append(dataset_id)
    return ids


def _tokens(tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor) -> str:
    """The attended tokens of one row, space-separated (the word-level tokenizer reads them back)."""
    return " ".join(tokenizer.convert_ids_to_tokens(ids[mask.bool()].tolist()))


def trl_rows(domain: Domain, condition: str = "default") -> dict[str, list[str]]:
    """The pairs of ``condition`` (those our ``dpo`` trains on) as TRL's preference columns:
    ``prompt`` ``<bos> … <sep>`` and ``chosen``/``rejected`` `` … <eos>`` (a leading space; ``<eos>``
    only where the response ended, as in our log-likelihoods), in the pairs' order."""
    from benchmark.data import build_offline_data
    from benchmark.feedback import RaterPopulation
    from benchmark.registry import get_condition

    cond = get_condition(condition)
    population = RaterPopulation.build(domain.oracle.weights, cond.raters)
    pairs = build_offline_data(domain.pool, domain.oracle.weights, population, cond, domain.name)[0].pairs
    tok, ctx = domain.tokenizer, pairs.contexts
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for i in range(len(pairs)):
        rows["prompt"].append(_tokens(tok, ctx.prompt_ids[i].cpu(), ctx.prompt_mask[i].cpu()))
        rows["chosen"].append(" " + _tokens(tok, pairs.chosen.tokens[i].cpu(), pairs.chosen.mask[i].cpu()))
        rows["rejected"].append(" " + _tokens(tok, pairs.rejected.tokens[i].cpu(), pairs.rejected.mask[i].cpu()))
    return rows


TRL_README = """prefbench {domain} domain, condition {condition}: {n} offline preference pairs for TRL.

  train/, dataset_dict.json  datasets.load_from_disk(DIR)["train"]: string columns prompt, chosen, rejected
                             (TRL's standard preference format; exactly the pairs prefbench's dpo trains on)
  tokenizer/                 AutoTokenizer.from_pretrained(DIR + "/tokenizer") (word-level; adds no special tokens)
  reference/                 AutoModelForCausalLM.from_pretrained(DIR + "/reference"): the SFT reference policy,
                             to fine-tune and to use as DPO's reference model

A prompt is "<bos> words <sep>"; a response is " words <eos>", without <eos> when it was cut at
{response_len} tokens (TRL's DPOTrainer then appends one: pass DPOConfig(max_length={positions}), the model's
positions, to cut it again).
Train with, e.g.: DPOTrainer(model=AutoModelForCausalLM.from_pretrained(DIR + "/reference"),
args=DPOConfig(output_dir=...), train_dataset=load_from_disk(DIR)["train"],
processing_class=AutoTokenizer.from_pretrained(DIR + "/tokenizer")).
"""


def _datasets() -> Any:
    """The ``datasets`` module (the optional ``trl`` extra), or a one-line error saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise UserError("--format trl needs the datasets package: pip install -e '.[trl]'") from None
    return datasets


def export_trl(domain: Domain, out_dir: Path, condition: str = "default") -> list[str]:
    """Write the pairs as a ``datasets`` DatasetDict, the tokenizer and the reference under ``out_dir``."""
    if getattr(domain, "tokenizer", None) is None or domain.spec.modality != "text":
        raise UserError(f"--format trl: domain {domain.name} is not a text domain; use --domain text")
    import shutil

    datasets = _datasets()

    from transformers.utils import logging as hf_logging

    rows = trl_rows(domain, condition)
    for name in ("train", "tokenizer", "reference"):
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)
    model = domain.reference.model
    bars = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the CLI reports what was written; the libraries' bars are noise
    hf_logging.disable_progress_bar()
    try:
        datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(out_dir))
        domain.tokenizer.save_pretrained(out_dir / "tokenizer")
        model.save_pretrained(out_dir / "reference")
    finally:
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            hf_logging.enable_progress_bar()
    c = domain.cfg
    (out_dir / "README.txt").write_text(TRL_README.format(
        domain=domain.name, condition=condition, n=len(rows["prompt"]),
        response_len=c.response_len, positions=model.config.n_positions))
    return [str(out_dir / n) for n in ("train", "tokenizer", "reference", "README.txt")]


def _remove_existing(root: Path, dataset_id: str) -> None:
    import shutil

    path = root.joinpath(*dataset_id.split("/"))
    if path.exists():
        shutil.rmtree(path)


def check_format(fmt: str, domain: str) -> None:
    """A one-line error for an unknown format, or one that does not export ``domain``."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown export format; valid formats are {', '.join(FORMATS)}")
    if domain not in FORMAT_DOMAINS[fmt]:
        supported = "; ".join(f"--format {f} exports --domain {', '.join(d)}" for f, d in FORMAT_DOMAINS.items())
        raise UserError(f"--format {fmt} --domain {domain}: unsupported combination; {supported}")
    if fmt == "trl":
        _datasets()


def check_out_dir(out_dir: Path, overwrite: bool = False, fmt: str = "minari") -> None:
    """Refuse a folder that holds anything but an earlier prefbench export of ``fmt`` (unless
    ``overwrite``): an export must never mix its files into, or replace, someone else's."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: is a file; choose a directory")
    ours = FORMAT_NAMES.get(fmt, ())
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours) if out_dir.is_dir() else []
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"--out {out_dir}: is not empty ({shown}); "
                        "choose an empty or new directory, or pass --overwrite to write into it anyway")


def export(domain: Domain, fmt: str, out_dir: Path, condition: str = "default") -> list[str]:
    """Export ``domain``'s offline data in ``fmt`` (``trl``: the pairs of ``condition``); returns what
    was written."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown export format; valid formats are {', '.join(FORMATS)}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".prefbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot write there ({e.strerror}); choose a writable directory") from None
    if fmt == "trl":
        return export_trl(domain, out_dir, condition)
    return export_minari(domain, out_dir)
