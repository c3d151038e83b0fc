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

FORMATS = ("minari",)


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


def _remove_existing(root: Path, dataset_id: str) -> None:
    import shutil

    path = root.joinpath(*dataset_id.split("/"))
    if path.exists():
        shutil.rmtree(path)


def check_out_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Refuse a folder that holds anything but an earlier prefbench export (unless ``overwrite``):
    an export must never mix its files into, or replace, someone else's."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: is a file; choose a directory")
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name != "prefbench") if out_dir.is_dir() else []
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"--out {out_dir}: is not empty ({shown}); "
                        "choose an empty or new directory, or pass --overwrite to write into it anyway")


def export(domain: Domain, fmt: str, out_dir: Path) -> list[str]:
    """Export ``domain``'s offline data in ``fmt``; returns what was written."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown export format; valid formats are {', '.join(FORMATS)}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".prefbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot write there ({e.strerror}); choose a writable directory") from None
    return export_minari(domain, out_dir)
