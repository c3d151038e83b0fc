"""The text-to-motion evaluator (Guo et al. 2022 protocol): contrastive training on synthetic paired
data whose motion depends on the text's meaning, the metrics on hand-built embeddings (exact values),
and the protocol's replications, intervals, layout and input checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from domains.motion.evaluator import (
    EvaluatorConfig,
    MotionEvaluator,
    diversity,
    evaluate,
    fid,
    group_samples,
    mm_dist,
    multimodality,
    r_precision,
    train_evaluator,
)

MEANINGS, PHRASINGS, VOCAB, LENGTH = 16, 4, 64, 10
FEATURES, FRAMES = 59, 48
CHANCE_TOP3 = 3 / 32


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------
# Synthetic paired data: 16 meanings, 4 phrasings each sharing two key tokens, motion = the meaning's
# smooth pattern over frames + noise


@dataclass
class World:
    phrasings: torch.Tensor
    """[MEANINGS, PHRASINGS, LENGTH] token ids, right-padded with 0."""
    patterns: torch.Tensor
    """[MEANINGS, FEATURES, FRAMES] each meaning's noise-free motion."""


def _phrasing(meaning: int, g: torch.Generator) -> torch.Tensor:
    keys = torch.tensor([1 + 2 * meaning, 2 + 2 * meaning])  # tokens 1..32: two per meaning
    fillers = torch.randint(33, VOCAB, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)
    words = torch.cat([keys, fillers])[torch.randperm(len(keys) + len(fillers), generator=g)]
    return torch.cat([words, torch.zeros(LENGTH - len(words), dtype=torch.long)])


def _world(seed: int = 0) -> World:
    g = _gen(seed)
    phrasings = torch.stack([torch.stack([_phrasing(m, g) for _ in range(PHRASINGS)]) for m in range(MEANINGS)])
    t = torch.linspace(0, 1, FRAMES)
    freq = torch.randint(1, 4, (MEANINGS, FEATURES, 1), generator=g).float()
    phase = 2 * math.pi * torch.rand(MEANINGS, FEATURES, 1, generator=g)
    amp = torch.randn(MEANINGS, FEATURES, 1, generator=g)
    return World(phrasings, amp * torch.sin(2 * math.pi * freq * t + phase))


def _draw(world: World, n: int, g: torch.Generator, noise: float = 0.5
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n (tokens, motion) pairs of random meanings and phrasings; also the meanings."""
    meanings = torch.randint(0, MEANINGS, (n,), generator=g)
    tokens = world.phrasings[meanings, torch.randint(0, PHRASINGS, (n,), generator=g)]
    return tokens, _motions(world, meanings, g, noise), meanings


def _motions(world: World, meanings: torch.Tensor, g: torch.Generator, noise: float = 0.5) -> torch.Tensor:
    return world.patterns[meanings] + noise * torch.randn(len(meanings), FEATURES, FRAMES, generator=g)


@pytest.fixture(scope="module")
def world() -> World:
    return _world()


@pytest.fixture(scope="module")
def trained(world: World) -> MotionEvaluator:
    tokens, motions, _ = _draw(world, 2000, _gen(1))
    return train_evaluator(tokens, motions, VOCAB, EvaluatorConfig(steps=200), _gen(2))


@pytest.fixture(scope="module")
def held_out(world: World) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _draw(world, 320, _gen(3))


# ---------------------------------------------------------------------------------------------------
# The trained evaluator on held-out pairs


def test_trained_evaluator_retrieves_the_matching_text(trained, held_out):
    tokens, motions, _ = held_out
    text, motion = trained.embed_text(tokens), trained.embed_motion(motions)
    matched = r_precision(text, motion, generator=_gen(4))
    shuffled = r_precision(text, motion[torch.randperm(len(motion), generator=_gen(5))], generator=_gen(4))
    # up to ~2 other texts of the same meaning per batch of 32 tie with the own text in expectation
    assert matched[2] > 0.6 > 5 * CHANCE_TOP3 / 2
    assert shuffled[2] < 2 * CHANCE_TOP3
    assert bool((matched[1:] >= matched[:-1]).all())


def test_mm_dist_matched_below_shuffled(trained, held_out):
    tokens, motions, _ = held_out
    text, motion = trained.embed_text(tokens), trained.embed_motion(motions)
    shuffled = motion[torch.randperm(len(motion), generator=_gen(6))]
    assert mm_dist(text, motion) < 0.7 * mm_dist(text, shuffled)


def test_fid_separates_real_from_jittered_and_collapsed(trained, world, held_out):
    _, motions, meanings = held_out
    g = _gen(7)
    real = trained.embed_motion(motions)
    another_real = trained.embed_motion(_motions(world, meanings, g))
    jittered = trained.embed_motion(_motions(world, meanings, g, noise=2.0))
    collapsed = trained.embed_motion(_motions(world, meanings % 4, g))  # four meanings only
    floor = fid(another_real, real)
    assert floor < 0.5 * fid(jittered, real)
    assert floor < 0.5 * fid(collapsed, real)


def test_text_embedding_ignores_where_the_padding_is(trained, held_out):
    tokens = held_out[0][:16]
    lengths = (tokens != 0).sum(1)
    left_padded = torch.stack([torch.cat([t[l:], t[:l]]) for t, l in zip(tokens, lengths.tolist())])
    assert torch.allclose(trained.embed_text(tokens), trained.embed_text(left_padded), atol=1e-6)


def test_training_is_deterministic_and_leaves_the_global_rng_alone(world):
    tokens, motions, _ = _draw(world, 300, _gen(8))
    cfg = EvaluatorConfig(steps=10, batch=64)
    before = torch.get_rng_state()
    a = train_evaluator(tokens, motions, VOCAB, cfg, _gen(9))
    assert torch.equal(torch.get_rng_state(), before)
    b = train_evaluator(tokens, motions, VOCAB, cfg, _gen(9))
    c = train_evaluator(tokens, motions, VOCAB, cfg, _gen(10))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


# ---------------------------------------------------------------------------------------------------
# Metrics on hand-built embeddings


def test_r_precision_is_one_on_identity_embeddings():
    emb = 5 * torch.eye(96)
    assert torch.equal(r_precision(emb, emb.clone(), generator=_gen(0)), torch.ones(3, dtype=torch.float64))
    assert torch.equal(r_precision(emb, emb.clone(), generator=_gen(0), per="text"), torch.ones(3, dtype=torch.float64))


def test_r_precision_is_chance_on_shuffled_alignment():
    emb = torch.randn(6400, 16, generator=_gen(1))
    misaligned = emb[torch.randperm(len(emb), generator=_gen(2))]
    hits = r_precision(emb, misaligned, generator=_gen(3))
    assert torch.allclose(hits, torch.tensor([1.0, 2, 3], dtype=torch.float64) / 32, atol=0.012)


def test_r_precision_of_a_collapsed_evaluator_is_exactly_chance():
    """Ties are broken at random in expectation: a constant embedding ranks nothing."""
    const = torch.ones(64, 8)
    chance = torch.tensor([1.0, 2, 3], dtype=torch.float64) / 32
    assert torch.allclose(r_precision(const, const, generator=_gen(0)), chance)


def test_r_precision_uses_batches_of_min_32_and_n():
    const = torch.ones(10, 8)
    chance = torch.tensor([1.0, 2, 3], dtype=torch.float64) / 10
    assert torch.allclose(r_precision(const, const, generator=_gen(0)), chance)


def test_r_precision_ranks_texts_per_motion_by_default():
    """Texts at 0 and 10, motions at 4 and 20: each motion's nearest text is its own (1.0), but text
    1's nearest motion is motion 0 (per text: 0.5)."""
    text, motion = torch.tensor([[0.0], [10.0]]), torch.tensor([[4.0], [20.0]])
    assert float(r_precision(text, motion, top=1)[0]) == 1.0
    assert float(r_precision(text, motion, top=1, per="text")[0]) == 0.5


def test_mm_dist_on_constructed_embeddings():
    text = torch.zeros(4, 3)
    motion = torch.tensor([[3.0, 4, 0], [0, 0, 1], [0, 2, 0], [6, 8, 0]])  # distances 5, 1, 2, 10
    assert mm_dist(text, motion) == pytest.approx(4.5)


def test_diversity_on_equidistant_embeddings_is_exact():
    """Points 3·e_i are all 3√2 apart: exact only if the two sets are disjoint (no self-pairs)."""
    emb, g = 3 * torch.eye(8), _gen(0)
    for pairs in [300] * 30 + [1, 2, 3] * 10:  # at most N // 2 = 4 pairs
        assert diversity(emb, pairs=pairs, generator=g) == pytest.approx(3 * math.sqrt(2), abs=1e-12)


def test_diversity_on_two_clusters():
    """Half the points at 0, half at 1 (1-d): a random disjoint pair is split with probability
    N/2 · N/2 / C(N, 2) ≈ 1/2 (here 50/99); its expectation over many draws."""
    emb = torch.cat([torch.zeros(50, 1), torch.ones(50, 1)])
    g = _gen(2)
    mean = sum(diversity(emb, pairs=50, generator=g) for _ in range(400)) / 400
    assert mean == pytest.approx(50 / 99, abs=0.01)


def test_multimodality_on_constructed_embeddings():
    scale = torch.arange(1.0, 9.0)  # text t's samples are scale_t · e_k: distinct samples scale_t·√2 apart
    grouped = scale[:, None, None] * torch.eye(5)[None]
    assert multimodality(grouped, pairs=10, generator=_gen(0)) == pytest.approx(math.sqrt(2) * 4.5, abs=1e-12)
    assert multimodality(grouped[:, :2], pairs=10, generator=_gen(0)) == pytest.approx(math.sqrt(2) * 4.5, abs=1e-12)


def test_multimodality_is_the_mean_over_distinct_pairs():
    """Samples at 0, 1, 3: distinct pairs 1, 3, 2 apart, mean 2 (self-pairs would pull it to 4/3)."""
    grouped = torch.tensor([0.0, 1.0, 3.0])[None, :, None].expand(50, 3, 1)
    assert multimodality(grouped, pairs=2000, generator=_gen(1)) == pytest.approx(2.0, abs=0.02)


def test_multimodality_needs_two_samples_per_text():
    with pytest.raises(ValueError, match="K ≥ 2"):
        multimodality(torch.zeros(4, 1, 8))


def test_fid_is_zero_on_identical_sets_and_grows_with_a_shift():
    emb = torch.randn(200, 4, generator=_gen(0))
    assert fid(emb, emb) == pytest.approx(0.0, abs=1e-6)
    assert fid(emb + torch.tensor([3.0, 0, 0, 0]), emb) == pytest.approx(9.0, rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# The protocol


def test_group_samples_layouts():
    n, k = 3, 2
    repeat = torch.cat([torch.arange(n)] * k) * 10 + torch.arange(k).repeat_interleave(n)  # 10·i + j
    interleave = torch.arange(n).repeat_interleave(k) * 10 + torch.arange(k).repeat(n)
    want = torch.tensor([[0, 1], [10, 11], [20, 21]])
    assert torch.equal(group_samples(repeat, k, "repeat"), want)
    assert torch.equal(group_samples(interleave, k, "interleave"), want)


@pytest.fixture(scope="module")
def protocol_inputs(world: World) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """96 prompts, their real motions, and K = 2 generated motions each in the "repeat" layout."""
    g = _gen(11)
    tokens, real, meanings = _draw(world, 96, g)
    generated = torch.cat([_motions(world, meanings, g), _motions(world, meanings, g)])
    return tokens, generated, real


def test_evaluate_reports_every_metric_with_its_interval(trained, protocol_inputs):
    tokens, generated, real = protocol_inputs
    out = evaluate(trained, tokens, generated, real, 2, EvaluatorConfig(replications=5), _gen(12), layout="repeat")
    names = ["r_precision_top1", "r_precision_top2", "r_precision_top3", "fid", "mm_dist", "diversity"]
    for name in [*names, *(f"real_{n}" for n in names), "multimodality"]:
        assert math.isfinite(out[name]), name
        assert out[f"{name}_ci"] >= 0, name
    assert out["r_precision_top3"] > 0.6 and out["real_r_precision_top3"] > 0.6
    assert out["real_mm_dist_ci"] == 0.0  # one real motion per prompt: nothing re-drawn
    assert out["multimodality_ci"] == 0.0  # K = 2: one pair per text, the same in every replication
    assert "real_multimodality" not in out
    assert out["r_precision_top1_ci"] > 0


def test_evaluate_is_deterministic_and_layout_aware(trained, protocol_inputs):
    tokens, generated, real = protocol_inputs
    cfg = EvaluatorConfig(replications=3)
    a = evaluate(trained, tokens, generated, real, 2, cfg, _gen(13), layout="repeat")
    assert a == evaluate(trained, tokens, generated, real, 2, cfg, _gen(13), layout="repeat")
    assert a != evaluate(trained, tokens, generated, real, 2, cfg, _gen(14), layout="repeat")
    interleaved = group_samples(generated, 2, "repeat").reshape(len(generated), *generated.shape[1:])
    assert a == evaluate(trained, tokens, interleaved, real, 2, cfg, _gen(13), layout="interleave")


def test_evaluate_of_the_real_motions_as_generated(trained, protocol_inputs):
    """With K = 1 and the real motions as the generated ones: FID 0, MM-Dist the real row's, no
    Multimodality."""
    tokens, _, real = protocol_inputs
    out = evaluate(trained, tokens, real, real, 1, EvaluatorConfig(replications=2), _gen(15), layout="interleave")
    assert out["fid"] == pytest.approx(0.0, abs=1e-6)
    assert out["mm_dist"] == out["real_mm_dist"]
    assert "multimodality" not in out


def test_each_replication_draws_one_of_the_k_samples_per_context(trained, world, protocol_inputs):
    """Sample 0 of every context is its real motion, sample 1 a heavily jittered one: a fixed pick
    would give FID 0 (sample 0) or the jittered set's FID (sample 1); a random pick per context and
    replication lies strictly between, and varies between replications."""
    tokens, _, real = protocol_inputs
    jittered = real + 2.0 * torch.randn(real.shape, generator=_gen(16))
    cfg = EvaluatorConfig(replications=6)
    out = evaluate(trained, tokens, torch.cat([real, jittered]), real, 2, cfg, _gen(17), layout="repeat")
    all_jittered = fid(trained.embed_motion(jittered), trained.embed_motion(real))
    assert 0.05 * all_jittered < out["fid"] < 0.8 * all_jittered
    assert out["fid_ci"] > 0


def test_evaluate_rejects_a_wrong_number_of_samples(trained, protocol_inputs):
    tokens, generated, real = protocol_inputs
    with pytest.raises(ValueError, match="N·K"):
        evaluate(trained, tokens, generated[:-1], real, 2, EvaluatorConfig(replications=2), _gen(0), layout="repeat")
    with pytest.raises(ValueError, match="N·K"):
        evaluate(trained, tokens, generated, real, 3, EvaluatorConfig(replications=2), _gen(0), layout="repeat")
    with pytest.raises(ValueError, match="one ground-truth motion per context"):
        evaluate(trained, tokens, generated, real[:-1], 2, EvaluatorConfig(replications=2), _gen(0), layout="repeat")


def test_a_stored_evaluator_loads_from_its_config(trained, held_out):
    """What a domain's ``load`` does: rebuild from the config it trained with, load the weights."""
    loaded = MotionEvaluator(VOCAB, FEATURES, EvaluatorConfig(steps=200))
    loaded.load_state_dict({k: v.clone() for k, v in trained.state_dict().items()})
    tokens, motions, _ = held_out
    assert torch.equal(loaded.embed_text(tokens), trained.embed_text(tokens))
    assert torch.equal(loaded.embed_motion(motions), trained.embed_motion(motions))
