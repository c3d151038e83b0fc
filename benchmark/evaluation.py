"""Evaluation with the hidden oracle on held-out contexts (the runner's, never an algorithm's).

**Paired, common-random-number evaluation.** At a cell's seed, the policy and the reference are
sampled on the same evaluation contexts from generators in the same state, so that wherever the
domain's sampler allows it the two are scored on the *same randomness*: the same token-sampler
stream (text), the same initial noise of a deterministic DDIM chain (image: η = 0 pairs images
exactly), the same environment resets and action-noise stream (robot). A policy identical to the
reference therefore produces exactly the reference's samples and scores exactly 0 / 0.5.

Headline metrics (docs/design.md §5):

- ``gold_reward``: mean oracle reward of the policy's samples; ``reference_gold_reward`` the
  reference's on the same draws;
- ``gold_gain`` = mean over contexts c of d_c = mean_k g_π(c, k) − mean_k g_ref(c, k), with a 95%
  Student-t interval over contexts (``gold_gain_ci`` is its half-width);
- ``normalized_score`` = 100 · gold_gain / (T − R), where T = mean_c max_n g_ref(c, n) is the
  best-of-N reference target and R = mean_{c,n} g_ref(c, n) the reference's mean over *all* those
  N draws (both computed once at preparation): 0 = the reference, 100 = its best-of-N;
- ``win_rate`` = mean over (c, k) of σ((g_π(c, k) − g_ref(c, k)) / T_oracle), interval over contexts;
- ``kl_to_ref`` / ``kl_k3_to_ref`` (k1 / k3 on the policy's samples) where the likelihood is exact
  (capability ``exact_logp``: the sum of the step view's log-probs, e.g. a stochastic diffusion
  chain's, whose KL bounds the images' from above); otherwise ``elbo_gap`` = E_π[log π − log π_ref]
  of the surrogate, which is not a divergence and is never shown as a KL;
- ``diversity`` and the domain's own metrics (``Oracle.metrics``), ``reference/<name>`` the
  reference's on the same draws;
- ``raters/win_rate``: the win rate against the reference as judged by a population of synthetic
  raters (:func:`evaluation_raters`: drawn by clustering, Monti et al. 2019, from a heterogeneous
  base population that is not the training one), mean over raters of σ((u_r(π) − u_r(ref)) / T);
  whether it ranks algorithms as the gold does is an experiment of the claims report.

A domain with an in-distribution split (``Domain.indist_contexts``) is also scored there, under
``indist/<name>``. Every metric must be finite, or the cell fails with the names of those that
are not.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.api import Batch, Contexts, Policy, Samples
from benchmark.data import stable_seed
from benchmark.domain import Domain
from benchmark.feedback import RaterPopulation, RaterPopulationConfig, synthesize_raters
from benchmark.metrics import SCORE_VERSION
from benchmark.objectives import kl_k1, kl_k3
from benchmark.progress import Progress

HELDOUT, INDIST = "heldout", "indist"


def _ctx_chunk(cfg_chunk: int, num: int) -> int:
    return max(1, cfg_chunk // max(num, 1))


@torch.no_grad()
def sample_chunked(
    policy: Policy, contexts: Contexts, num: int, generator: torch.Generator, chunk: int, progress: Progress,
    what: str,
) -> Samples:
    """``policy.sample`` over contexts in chunks, laid out like ``contexts.repeat(num)``."""
    c = _ctx_chunk(chunk, num)
    out = []
    with progress.task(what, len(contexts)) as task:
        for i in range(0, len(contexts), c):
            part = contexts[i : i + c]
            out.append(policy.sample(part, num, generator=generator).to("cpu"))
            task.advance(len(part))
    return Batch.cat(out)


@torch.no_grad()
def log_probs_chunked(
    policy: Policy, reference: Policy, contexts: Contexts, samples: Samples, generator: torch.Generator, chunk: int,
    exact: bool = False,
) -> tuple[Tensor, Tensor]:
    """(log π, log π_ref) of ``samples``, on one noise draw per chunk (common random numbers);
    ``exact``: the sum of the step view's log-probs (the exact likelihood where the domain has one,
    e.g. a stochastic diffusion chain), else ``log_prob``."""
    lp, lr = [], []
    for i in range(0, len(samples), chunk):
        ctx, smp = contexts[i : i + chunk], samples[i : i + chunk]
        noise = policy.draw_noise(ctx, smp, generator=generator)
        for model, out in ((policy, lp), (reference, lr)):
            value = (model.step_log_prob(ctx, smp, noise=noise)[0].sum(-1) if exact
                     else model.log_prob(ctx, smp, noise=noise))
            out.append(value.float().cpu())
    return torch.cat(lp), torch.cat(lr)


@torch.no_grad()
def gold_chunked(domain: Domain, contexts: Contexts, samples: Samples, chunk: int) -> Tensor:
    return torch.cat([
        domain.oracle.gold(contexts[i : i + chunk], samples[i : i + chunk]).float().cpu()
        for i in range(0, len(samples), chunk)
    ])


def components_and_gold(domain: Domain, contexts: Contexts, samples: Samples, chunk: int) -> tuple[Tensor, Tensor]:
    """The oracle's components ``[N, K]`` and gold rewards ``[N]`` from one pass of the oracle
    (gold = components · weights, the ``Oracle`` contract; computed per chunk as ``Oracle.gold`` does)."""
    weights = domain.oracle.weights.to(torch.float32)
    comps, gold = [], []
    for i in range(0, len(samples), chunk):
        c = domain.oracle.components(contexts[i : i + chunk], samples[i : i + chunk])
        comps.append(c.float().cpu())
        gold.append((c @ weights).float().cpu())
    return torch.cat(comps), torch.cat(gold)


#: The base population the evaluation's synthetic raters are clustered from: as heterogeneous as
#: the ``heterogeneous-raters`` condition's, with another seed (not the raters of any training data).
EVAL_BASE_RATERS = RaterPopulationConfig(n_raters=24, n_clusters=4, dispersion=0.8, flip=0.35, seed=1)
EVAL_RATERS, EVAL_RATER_CLUSTERS, EVAL_PROBES = 64, 4, 512
_RATERS: weakref.WeakKeyDictionary[Domain, Tensor] = weakref.WeakKeyDictionary()


def evaluation_raters(domain: Domain) -> Tensor:
    """Weights ``[64, K]`` of the synthetic raters of ``raters/win_rate``: the base raters' judgments
    (utilities of the first 512 pool items) are clustered and 64 raters drawn with the clusters'
    statistics (``benchmark.feedback.synthesize_raters``)."""
    if domain not in _RATERS:
        base = RaterPopulation.build(domain.oracle.weights, EVAL_BASE_RATERS)
        probes = domain.pool.components[:EVAL_PROBES].to(torch.float32)
        judgments = (probes @ base.weights.T).T
        synthetic = synthesize_raters(base, judgments, EVAL_RATER_CLUSTERS, EVAL_RATERS,
                                      seed=stable_seed("eval-raters", domain.name))
        _RATERS[domain] = synthetic.weights
    return _RATERS[domain]


def eval_splits(domain: Domain) -> dict[str, Contexts]:
    """The held-out split (always) and the in-distribution split (where the domain has one)."""
    splits = {HELDOUT: domain.eval_contexts}
    if getattr(domain, "indist_contexts", None) is not None:
        splits[INDIST] = domain.indist_contexts
    return splits


@torch.no_grad()
def reference_statistics(domain: Domain, progress: Progress) -> dict:
    """Per split: the best-of-N target T and the reference's mean R over all N draws (the 100 and
    the 0 of ``normalized_score``'s scale). Computed once at preparation and cached."""
    cfg = domain.cfg
    ref = domain.reference.eval()
    n = max(cfg.best_of, cfg.eval_samples)
    out: dict = {"score_version": SCORE_VERSION, "best_of": n, "splits": {}}
    for split, ctx in eval_splits(domain).items():
        gen = torch.Generator().manual_seed(stable_seed("reference-best-of", domain.name, split, cfg.seed))
        samples = sample_chunked(ref, ctx, n, gen, cfg.eval_batch, progress,
                                 f"{domain.name}: reference best-of-{n} ({split})")
        gold = gold_chunked(domain, ctx.repeat(n), samples, cfg.eval_batch).view(len(ctx), n)
        out["splits"][split] = {"target": float(gold.max(dim=1).values.mean()), "ref_mean": float(gold.mean())}
    return out


def t_half_width(values: Tensor, level: float = 0.95) -> float:
    """Half-width of the Student-t interval of the mean of ``values`` (0 if they are constant)."""
    n = values.numel()
    if n < 2:
        return float("nan")
    sd = float(values.double().std())
    if sd == 0.0:
        return 0.0
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


@dataclass
class Draws:
    """One policy's evaluation samples on a split at one seed, and their gold rewards ``[C, k]``."""

    contexts: Contexts
    samples: Samples
    gold: Tensor
    components: Tensor
    """The oracle's components of each sample ``[C·k, K]`` (what the synthetic raters weigh)."""

    @property
    def repeated(self) -> Contexts:
        return self.contexts.repeat(self.gold.shape[1])


def paired_metrics(pol: Tensor, ref: Tensor, target: float, ref_mean: float, temperature: float
                   ) -> dict[str, float]:
    """Headline metrics of gold rewards ``pol``, ``ref`` ``[C, k]`` drawn on common randomness."""
    scale = target - ref_mean
    diff = pol.double().mean(1) - ref.double().mean(1)
    wins = torch.sigmoid((pol.double() - ref.double()) / temperature).mean(1)
    gain, gain_ci = float(diff.mean()), t_half_width(diff)
    valid = scale > 0
    return {
        "gold_reward": float(pol.double().mean()),
        "reference_gold_reward": float(ref.double().mean()),
        "gold_gain": gain,
        "gold_gain_ci": gain_ci,
        "normalized_score": 100.0 * gain / scale if valid else float("nan"),
        "normalized_score_ci": 100.0 * gain_ci / scale if valid else float("nan"),
        "win_rate": float(wins.mean()),
        "win_rate_ci": t_half_width(wins),
        "target_gold_reward": target,
        "reference_mean_gold_reward": ref_mean,
    }


_REFERENCE_DRAWS: weakref.WeakKeyDictionary[Domain, dict] = weakref.WeakKeyDictionary()


class Evaluator:
    """Scores a trained policy against the domain's oracle, paired with the reference."""

    def __init__(self, domain: Domain, ref_stats: dict):
        self.domain = domain
        self.stats = ref_stats

    def _draws(self, policy: Policy, split: str, ctx: Contexts, seed: int, progress: Progress, what: str) -> Draws:
        d, k = self.domain, self.domain.cfg.eval_samples
        gen = torch.Generator().manual_seed(stable_seed("eval", d.name, split, seed))
        samples = sample_chunked(policy, ctx, k, gen, d.cfg.eval_batch, progress, what)
        comps, gold = components_and_gold(d, ctx.repeat(k), samples, d.cfg.eval_batch)
        return Draws(ctx, samples, gold.view(len(ctx), k), comps)

    def reference_draws(self, split: str, ctx: Contexts, seed: int, progress: Progress) -> tuple[Draws, dict]:
        """The reference's draws at ``seed`` (memoised per prepared domain: every algorithm's cell at
        this seed is paired with the same reference samples) and their domain metrics."""
        memo = _REFERENCE_DRAWS.setdefault(self.domain, {})
        key = (split, seed, self.domain.cfg.eval_samples, self.domain.cfg.eval_batch)
        if key not in memo:
            if len(memo) >= 16:
                memo.clear()
            draws = self._draws(self.domain.reference.eval(), split, ctx, seed, progress, f"reference ({split})")
            metrics = self.domain.oracle.metrics(draws.repeated, draws.samples, draws.gold.shape[1])
            memo[key] = (draws, {k: float(v) for k, v in metrics.items()})
        return memo[key]

    def _likelihood_metrics(self, policy: Policy, draws: Draws, seed: int) -> dict[str, float]:
        d = self.domain
        gen = torch.Generator().manual_seed(stable_seed("eval-noise", d.name, seed))
        exact = "exact_logp" in d.spec.capabilities
        lp, lp_ref = log_probs_chunked(policy, d.reference, draws.repeated, draws.samples, gen, d.cfg.eval_batch, exact)
        if exact:
            return {"kl_to_ref": float(kl_k1(lp, lp_ref).mean()), "kl_k3_to_ref": float(kl_k3(lp, lp_ref).mean())}
        return {"elbo_gap": float((lp - lp_ref).mean())}

    def _rater_win_rate(self, mine: Draws, ref: Draws) -> float:
        d = self.domain
        raters = evaluation_raters(d)
        u_pol, u_ref = mine.components @ raters.T, ref.components @ raters.T
        return float(torch.sigmoid((u_pol.double() - u_ref.double()) / d.oracle.temperature).mean())

    def _split(self, policy: Policy, split: str, ctx: Contexts, seed: int, progress: Progress) -> dict[str, float]:
        d = self.domain
        anchors = self.stats["splits"][split]
        ref, ref_metrics = self.reference_draws(split, ctx, seed, progress)
        mine = self._draws(policy, split, ctx, seed, progress, f"evaluate ({split})")
        metrics = paired_metrics(mine.gold, ref.gold, anchors["target"], anchors["ref_mean"], d.oracle.temperature)
        metrics["gold_reward_std"] = float(mine.gold.std())
        metrics.update({k: float(v) for k, v in d.oracle.metrics(mine.repeated, mine.samples,
                                                                 mine.gold.shape[1]).items()})
        metrics.update({f"reference/{k}": v for k, v in ref_metrics.items()})
        if split == HELDOUT:
            metrics.update(self._likelihood_metrics(policy, mine, seed))
            gen = torch.Generator().manual_seed(stable_seed("eval-policy", d.name, seed))
            metrics.update({k: float(v) for k, v in d.policy_metrics(policy, ctx, gen).items()})
            metrics["raters/win_rate"] = self._rater_win_rate(mine, ref)
            metrics["eval_contexts"] = float(len(ctx))
            metrics["eval_samples"] = float(len(mine.samples))
        return metrics

    @torch.no_grad()
    def evaluate(self, policy: Policy, seed: int, progress: Progress | None = None) -> dict[str, float]:
        progress = progress or Progress()
        policy.eval()
        out: dict[str, float] = {"score_version": float(SCORE_VERSION)}
        for split, ctx in eval_splits(self.domain).items():
            metrics = self._split(policy, split, ctx, seed, progress)
            prefix = "" if split == HELDOUT else f"{split}/"
            out.update({f"{prefix}{k}": v for k, v in metrics.items()})
        return out


def non_finite(metrics: dict[str, float]) -> list[str]:
    """Metrics that are NaN or infinite (such a cell is marked failed, naming them)."""
    return sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))
