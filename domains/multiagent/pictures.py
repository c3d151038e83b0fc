"""The multi-agent domain's picture: one episode per scenario, reference beside the trained policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.api import Policy
from domains.multiagent.envs import SCENARIOS


def _entities(domain: Any, k: int) -> tuple[tuple[str, ...], tuple[float, ...], tuple[tuple[float, float, float], ...]]:
    """Kinds, radii and MPE's colours of scenario ``k``'s entities (agents first, then landmarks)."""
    env = domain.sim.env(k)
    learners = SCENARIOS[env.name].learners
    kinds = []
    for i, e in enumerate(env.world.entities):
        if i < len(env.world.agents):
            kinds.append("agent" if i < learners else "prey")
        else:
            kinds.append("obstacle" if getattr(e, "collide", False) else "landmark")
    return (tuple(kinds), tuple(float(e.size) for e in env.world.entities),
            tuple(tuple(float(x) for x in np.asarray(e.color)[:3]) for e in env.world.entities))


def episode_gif(domain: Any, policy: Policy, out_dir: Path, generator: torch.Generator) -> list[str]:
    """``multiagent.gif``: for the first held-out context of each scenario, one episode of the
    reference and one of ``policy`` (rows: scenarios; columns: reference, trained), each captioned
    with its normalized team return."""
    from domains.multiagent.render import Panel, animate_episodes

    ctx = domain.eval_contexts
    rows = []
    for k, name in enumerate(domain.cfg.scenarios):
        idx = torch.nonzero(ctx.task == k).flatten()[:1]
        if not len(idx):
            continue
        one = ctx[idx]
        panels = []
        for title, pol in (("reference", domain.reference), ("trained", policy)):
            pol.eval()
            out = domain.sim.rollout(one, pol.rollout_act(generator=generator), record=True, trace=True)
            score = float(domain.oracle.normalized(one.task, out.rewards.sum(-1))[0])
            domain.sim.env(k).restore(one.sim_state[0].numpy())
            kinds, sizes, colors = _entities(domain, k)
            panels.append(Panel(title, out.positions[0].numpy(), kinds, sizes, colors,
                                caption=f"normalized return {score:.0f}"))
        rows.append((name, panels))
    out_dir.mkdir(parents=True, exist_ok=True)
    return [str(animate_episodes(rows, out_dir / "multiagent.gif"))]
