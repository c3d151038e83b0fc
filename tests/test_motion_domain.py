"""The motion domain (smoke preset): x̂₀-prediction in the shared diffusion policy, the MDM
denoiser's conditioning, the held-out split, the surrogate likelihood on motions, SDEdit reset,
the evaluator's sanity on generated motions, metrics, and the GIF."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from benchmark.api import Batch
from benchmark.policies.diffusion import DiffusionPolicy
from benchmark.progress import Progress
from benchmark.runner import CellRequest, prepare_domain, resolve
from domains.motion import motions as M
from domains.motion import skeleton as K
from domains.motion.domain import MotionDomain, denormalise, normalise
from domains.motion.evaluator import EvaluatorConfig, evaluate, train_evaluator


@pytest.fixture(scope="module")
def domain(cache) -> MotionDomain:
    cell = resolve(CellRequest("dpo", "motion", preset="smoke"))
    d, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    return d


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ConstantX0(nn.Module):
    """A denoiser whose x̂₀ is a fixed motion, whatever x_t, t and the prompt."""

    def __init__(self, x0: Tensor):
        super().__init__()
        self.x0 = nn.Parameter(x0)

    def forward(self, x: Tensor, t: Tensor, contexts, drop=None) -> Tensor:
        return self.x0.expand(x.shape[0], *self.x0.shape)


def test_x0_prediction_samples_what_it_predicts_and_scores_its_own_error() -> None:
    target = torch.linspace(-1, 1, 6 * 5).view(6, 5)
    policy = DiffusionPolicy(ConstantX0(target), shape=(6, 5), steps=5, guidance=3.0, clip=None,
                             sample_field="motion", prediction="sample", scale=1.0)
    ctx = Batch({"tokens": torch.ones(3, 2, dtype=torch.long)})
    out = policy.sample(ctx, 2, generator=_gen(0))
    assert set(out.tensors) == {"motion"}
    torch.testing.assert_close(out.motion, target.expand(6, 6, 5), atol=1e-4, rtol=0)  # DDIM lands on x̂₀
    # log_prob is −s·‖x₀ − x̂₀‖²: 0 on the target, the squared error elsewhere, whatever the noise
    smp = Batch({"motion": target.expand(3, 6, 5) + torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1)})
    lp = policy.log_prob(ctx, smp, noise=policy.draw_noise(ctx, smp, generator=_gen(1)))
    torch.testing.assert_close(lp, -torch.tensor([0.0, 0.25, 1.0]))
    with pytest.raises(ValueError, match="prediction"):
        DiffusionPolicy(ConstantX0(target), shape=(6, 5), prediction="v")


def test_features_normalise_round_trip(domain: MotionDomain) -> None:
    pos = np.stack([M.generate(M.random_meaning(random.Random(i)), random.Random(i), domain.cfg.frames)
                    for i in range(3)])
    feats = torch.from_numpy(K.to_features(pos)).float()
    x = normalise(feats, domain.mean, domain.std)
    assert x.shape == (3, K.feature_dim(), domain.cfg.frames)
    torch.testing.assert_close(denormalise(x, domain.mean, domain.std), feats, atol=1e-5, rtol=0)


def test_heldout_meanings_and_contexts(domain: MotionDomain) -> None:
    spec = domain.spec
    assert spec.sample_fields == ("motion",) and spec.action_shape == (K.feature_dim(), domain.cfg.frames)
    evals = {tuple(r) for r in domain.eval_contexts.meaning.tolist()}
    seen = {tuple(r) for c in (domain.train_contexts, domain.pool.contexts) for r in c.meaning.tolist()}
    assert evals and not evals & seen
    assert all(M.is_heldout(M.Meaning.from_ids(list(r))) for r in evals)
    # the tokens are a phrasing of the meaning
    for tokens, meaning in zip(domain.eval_contexts.tokens.tolist(), domain.eval_contexts.meaning.tolist()):
        assert M.detokenize(tokens) in M.phrasings(M.Meaning.from_ids(meaning))


def test_prompt_conditions_the_reference_and_guidance_matters(domain: MotionDomain) -> None:
    ref = domain.reference
    ctx = domain.eval_contexts[:3]
    s1 = ref.sample(ctx, 2, generator=_gen(7))
    assert torch.equal(s1.motion, ref.sample(ctx, 2, generator=_gen(7)).motion)
    assert not torch.equal(s1.motion, ref.sample(ctx, 2, generator=_gen(8)).motion)
    noguide = domain.make_diffusion_policy(ref.denoiser, guidance=1.0)
    assert not torch.equal(s1.motion, noguide.sample(ctx, 2, generator=_gen(7)).motion)
    x = s1.motion[:2]
    t = torch.tensor([500, 500])
    with torch.no_grad():
        cond = ref.denoiser(x, t, ctx[:2])
        null = ref.denoiser(x, t, ctx[:2], torch.tensor([True, True]))
        other = ref.denoiser(x, t, domain.eval_contexts[3:5])
    assert not torch.allclose(cond, null) and not torch.allclose(cond, other)


def test_crn_log_ratio_zero_and_sdedit_reset(domain: MotionDomain) -> None:
    policy, ref = domain.make_policy(), domain.reference
    ctx, x = domain.pool.contexts[domain.pool.context_index[:4]], domain.pool.samples[:4]
    noise = policy.draw_noise(ctx, x, generator=_gen(3))
    with torch.no_grad():
        assert torch.equal(policy.log_prob(ctx, x, noise=noise), ref.log_prob(ctx, x, noise=noise))
    start = ref.rollin(x, torch.tensor([1.0, 1.0, 0.0, 0.5]))
    out = ref.sample(ctx, 1, generator=_gen(0), start=start)
    torch.testing.assert_close(out.motion[:2], x.motion[:2])  # f = 1 returns the motion itself
    assert not torch.allclose(out.motion[2:], x.motion[2:])


def test_oracle_reads_the_pool_and_prefers_clean_motions(domain: MotionDomain) -> None:
    pool = domain.pool
    gold = pool.components @ domain.oracle.weights
    by_source = {name: float(gold[pool.source == i].mean()) for i, name in enumerate(pool.sources)
                 if bool((pool.source == i).any())}
    assert by_source["clean"] > by_source.get("frozen", -np.inf)
    assert by_source["clean"] > by_source.get("wrong_action", -np.inf)
    # the oracle's components of a pool sample are recomputed from its features alone
    idx = torch.arange(6)
    torch.testing.assert_close(domain.oracle.components(pool.contexts[pool.context_index[idx]], pool.samples[idx]),
                               pool.components[idx], atol=1e-4, rtol=0)


def test_evaluator_ranks_real_motions_above_shuffled_and_jittered() -> None:
    """The issue's sanity check, on the domain's own generated data: real motions of their captions
    score a higher R-precision and a lower FID than shuffled or jittered ones."""
    rng = random.Random(0)
    meanings = [M.random_meaning(rng, "any") for _ in range(1200)]
    texts = [rng.choice(M.phrasings(m)) for m in meanings]
    tokens = torch.tensor([M.tokenize(t) for t in texts])
    feats = torch.from_numpy(K.to_features(np.stack([M.generate(m, rng, 40) for m in meanings]))).float()
    mean, std = feats.mean((0, 1)), feats.std((0, 1)).clamp(min=1e-2)
    data = normalise(feats, mean, std)
    cfg = EvaluatorConfig(steps=150, replications=3)
    ev = train_evaluator(tokens[:1000], data[:1000], len(M.VOCAB), cfg, _gen(0))
    test_tok, real = tokens[1000:], data[1000:]
    other = torch.from_numpy(K.to_features(np.stack([M.generate(m, rng, 40) for m in meanings[1000:]]))).float()
    again = normalise(other, mean, std)  # another clean draw of the same prompts
    jitter = normalise(torch.from_numpy(K.to_features(np.stack(
        [M.behaviour("jittered", m, rng, 40) for m in meanings[1000:]]))).float(), mean, std)
    shuffled = again[torch.randperm(len(again), generator=_gen(1))]

    def score(x):
        return evaluate(ev, test_tok, x, real, 1, cfg, _gen(2), layout="interleave")

    good, shuf, jit = score(again), score(shuffled), score(jitter)
    assert good["r_precision_top3"] > shuf["r_precision_top3"] + 0.3
    assert good["r_precision_top3"] > jit["r_precision_top3"]
    assert good["fid"] < jit["fid"]
    assert good["mm_dist"] < shuf["mm_dist"]


def test_metrics_and_gif(domain: MotionDomain, tmp_path) -> None:
    ref = domain.reference
    ctx = domain.eval_contexts[:6]
    smp = ref.sample(ctx, 2, generator=_gen(0))
    m = domain.oracle.metrics(ctx.repeat(2), smp, 2)
    for key in ("r_precision_top1", "r_precision_top3", "fid", "mm_dist", "diversity", "multimodality",
                "real_r_precision_top3", "fid_ci", *(f"oracle_{c}" for c in M.COMPONENTS)):
        assert key in m and np.isfinite(m[key]), key
    assert 0 <= m["r_precision_top1"] <= m["r_precision_top3"] <= 1
    paths = domain.artifacts(domain.make_policy(), tmp_path, _gen(1))
    gif = Image.open(paths[0])
    assert paths[0].endswith("motion.gif") and gif.is_animated and gif.n_frames == domain.cfg.frames
    frames = []
    for i in (0, gif.n_frames // 2):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
    assert not np.array_equal(frames[0], frames[1])  # the figures move


@pytest.mark.parametrize("preset", ["quick", "standard"])
def test_larger_presets_build_their_models(preset: str) -> None:
    d = MotionDomain(MotionDomain.config(preset))
    policy = d.make_diffusion_policy(d.make_denoiser())
    ctx = MotionDomain.encode([M.random_meaning(random.Random(0))] * 2, random.Random(0))
    x = torch.zeros(2, *d.sample_shape())
    assert policy.denoise_error(ctx, Batch({"motion": x})).shape == (2,)


def test_metrics_pair_each_sample_with_its_own_prompt(domain: MotionDomain) -> None:
    """Samples laid out as ``contexts.repeat(num)`` are scored against their own prompts: giving the
    ground-truth motions as the samples reproduces the ground truth's R-precision and MM-Dist (a
    wrong layout pairs motions with other prompts' texts)."""
    ctx = domain.eval_contexts[:8]
    real = domain.oracle.real_motions(ctx)
    m = domain.oracle.metrics(ctx.repeat(2), Batch({"motion": real.repeat_interleave(2, dim=0)}), 2)
    assert m["mm_dist"] == pytest.approx(m["real_mm_dist"], abs=1e-6)
    assert m["r_precision_top1"] == pytest.approx(m["real_r_precision_top1"])
    shuffled = real[torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])].repeat_interleave(2, dim=0)
    assert domain.oracle.metrics(ctx.repeat(2), Batch({"motion": shuffled}), 2)["mm_dist"] > m["mm_dist"]
