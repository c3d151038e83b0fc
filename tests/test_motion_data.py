"""The motion domain's data (no model): the skeleton and its HumanML3D-style features, the prompt
grammar and split, the procedural generator, the behaviour sources and the hidden oracle."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from domains.motion import motions as M
from domains.motion import skeleton as K

# ---------------------------------------------------------------------------------------------
# shared draws (module scope: generated once)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def draws() -> list[M.Meaning]:
    rng = random.Random(123)
    return [M.random_meaning(rng, "any") for _ in range(200)]


@pytest.fixture(scope="module")
def by_source(draws: list[M.Meaning]) -> dict[str, np.ndarray]:
    """Positions ``[200, 48, J, 3]`` of each behaviour source for the same 200 meanings."""
    rng = random.Random(7)
    return {src: np.stack([M.behaviour(src, m, rng, 48) for m in draws]) for src in M.SOURCES}


def _rotate_translate(pos: np.ndarray, angle: float, offset: tuple[float, float]) -> np.ndarray:
    return K.rotate_y(pos.astype(np.float64), angle) + np.array([offset[0], 0.0, offset[1]])


# ---------------------------------------------------------------------------------------------
# skeleton and features
# ---------------------------------------------------------------------------------------------


def test_skeleton_is_a_tree_with_a_grounded_rest_pose() -> None:
    assert len(K.JOINTS) >= 15 and len(set(K.JOINTS)) == len(K.JOINTS)
    assert len(K.PARENTS) == len(K.JOINTS) == K.REST_OFFSETS.shape[0] == len(K.BONE_LENGTHS)
    assert K.PARENTS[0] == -1 and all(0 <= p < j for j, p in enumerate(K.PARENTS) if j)
    required = {"pelvis", "spine", "neck", "head", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist",
                "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "l_foot", "r_foot"}
    assert required <= set(K.JOINTS)
    assert [K.JOINTS[j] for j in K.FOOT_JOINTS] == ["l_ankle", "l_foot", "r_ankle", "r_foot"]
    np.testing.assert_allclose(K.BONE_LENGTHS[1:], np.linalg.norm(K.REST_OFFSETS[1:], axis=-1), rtol=1e-6)
    rest = K.REST_POSE
    assert rest[0, 1] == pytest.approx(0.95, abs=0.02)
    assert rest[:, 1].min() == pytest.approx(0.0, abs=1e-5)  # the toes touch the ground
    assert 1.55 < rest[:, 1].max() < 1.8  # a ~1.7 m human
    assert K.facing_angles(rest) == pytest.approx(0.0)  # faces +z
    assert rest[K.JOINT["l_hip"], 0] > 0 > rest[K.JOINT["r_hip"], 0]  # the left is +x


def test_feature_layout() -> None:
    j = K.NUM_JOINTS
    assert K.FEATURE_DIM == K.feature_dim() == 4 + 3 * (j - 1) + 4
    covered = np.zeros(K.FEATURE_DIM, dtype=int)
    for sl in K.FEATURE_SLICES.values():
        covered[sl] += 1
    assert (covered == 1).all()  # the slices partition the channels
    pos = M.generate(M.Meaning("walk", "forward", "slow"), random.Random(0), 48)
    feats = K.to_features(pos)
    assert feats.shape == (48, K.FEATURE_DIM) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[:, K.FEATURE_SLICES["root_height"]][:, 0], pos[:, 0, 1], atol=1e-6)
    contacts = feats[:, K.FEATURE_SLICES["foot_contacts"]]
    assert set(np.unique(contacts)) <= {0.0, 1.0} and 0 < contacts.mean() < 1


def test_feature_round_trip_is_canonicalisation() -> None:
    rng = random.Random(1)
    meanings = M.all_meanings()[::3]
    pos = np.stack([M.generate(m, rng, 48) for m in meanings])
    batch = pos[: 2 * 6].reshape(2, 6, 48, K.NUM_JOINTS, 3)  # two leading batch dimensions
    back = K.from_features(K.to_features(batch))
    assert back.shape == batch.shape and back.dtype == np.float32
    assert np.abs(back - K.canonicalize(batch)).max() < 1e-4
    noisy = M.behaviour("jittered", meanings[0], rng, 40)
    assert np.abs(K.from_features(K.to_features(noisy)) - K.canonicalize(noisy)).max() < 1e-4


def test_canonicalize_starts_at_the_origin_facing_forward() -> None:
    pos = M.generate(M.Meaning("run", "left", "fast"), random.Random(2), 48)
    canon = K.canonicalize(pos)
    assert canon[0, 0, [0, 2]] == pytest.approx([0.0, 0.0], abs=1e-5)
    assert K.facing_angles(canon[0]) == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(canon[..., 1], pos[..., 1], atol=1e-5)  # heights unchanged


def test_features_are_invariant_to_heading_and_position() -> None:
    pos = M.generate(M.Meaning("turn", "left", "slow"), random.Random(3), 48)
    feats = K.to_features(pos)
    for angle, offset in ((0.7, (3.0, -1.0)), (-2.9, (-5.0, 2.5)), (np.pi, (0.0, 0.0))):
        np.testing.assert_allclose(K.to_features(_rotate_translate(pos, angle, offset)), feats, atol=1e-4)
    omega = feats[:, K.FEATURE_SLICES["root_angular_velocity"]].sum()
    assert 1.2 < omega < 1.9  # a left turn of 75–105° turns the heading up


def test_foot_contacts_follow_speed_and_height() -> None:
    still = np.repeat(K.REST_POSE[None], 10, axis=0)
    assert (K.foot_contacts(still) == 1).all()
    lifted = still + np.array([0.0, 0.3, 0.0], dtype=np.float32)
    assert (K.foot_contacts(lifted) == 0).all()
    sliding = still + np.arange(10)[:, None, None] * np.array([0.05, 0.0, 0.0], dtype=np.float32)
    assert (K.foot_contacts(sliding) == 0).all()


def test_feature_conversion_of_a_batch_matches_one_motion_at_a_time() -> None:
    """The batched kernels (timed in benchmarks/motion_kernels.py) treat each motion on its own."""
    pos = np.stack([M.generate(m, random.Random(4), 48) for m in M.all_meanings()[:6]])
    feats = K.to_features(pos)
    for i in range(len(pos)):
        np.testing.assert_allclose(feats[i], K.to_features(pos[i:i + 1])[0], atol=1e-5)
    np.testing.assert_allclose(K.from_features(feats)[2], K.from_features(feats[2:3])[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# meanings, text and the split
# ---------------------------------------------------------------------------------------------


def test_meanings_and_ids() -> None:
    meanings = M.all_meanings()
    assert len(meanings) == len(set(meanings)) == 40
    assert {m.action for m in meanings} == set(M.ACTIONS) and len(M.ACTIONS) >= 8
    for m in meanings:
        ids = m.ids()
        assert len(ids) == 5 and M.Meaning.from_ids(ids) == m and ids[0] > 0
        for attr, i in zip(M.ATTRIBUTES[1:], ids[1:]):
            assert (i == 0) == (attr not in M.ACTION_ATTRIBUTES[m.action])
    with pytest.raises(ValueError):
        M.Meaning("walk", "forward")  # speed missing
    with pytest.raises(ValueError):
        M.Meaning("turn", "forward", "slow")  # turns go left or right
    with pytest.raises(ValueError):
        M.Meaning.from_ids([1, 9, 1, 0, 0])


def test_phrasings_and_tokenizer() -> None:
    seen: dict[str, M.Meaning] = {}
    for m in M.all_meanings():
        texts = M.phrasings(m)
        assert len(texts) >= 3 and len(set(texts)) == len(texts)
        for text in texts:
            assert seen.setdefault(text, m) == m, f"{text!r} phrases two meanings"
            ids = M.tokenize(text, M.MAX_WORDS)
            assert len(ids) == M.MAX_WORDS and M.detokenize(ids) == text
            assert M.PAD not in ids[: len(text.split())]
    assert M.VOCAB[M.PAD] == "<pad>" and len(set(M.VOCAB)) == len(M.VOCAB)
    assert max(len(t.split()) for m in M.all_meanings() for t in M.phrasings(m)) == M.MAX_WORDS
    assert M.tokenize("a person walks", 2) == [M.VOCAB.index("a"), M.VOCAB.index("person")]
    assert M.tokenize("A PERSON", 4)[2:] == [M.PAD, M.PAD]
    with pytest.raises(ValueError, match="moonwalks"):
        M.tokenize("a person moonwalks", 8)


def test_heldout_split_is_compositional() -> None:
    meanings = M.all_meanings()
    held = [m for m in meanings if M.is_heldout(m)]
    train = [m for m in meanings if not M.is_heldout(m)]
    assert 0.2 <= len(held) / len(meanings) <= 0.25
    for action in M.ACTIONS:
        assert any(m.action == action for m in train)
        for attr in M.ATTRIBUTES[1:]:
            for value in M.attribute_options(action, attr):
                assert any(m.action == action and getattr(m, attr) == value for m in train), (action, attr, value)
    rng = random.Random(5)
    assert all(not M.is_heldout(M.random_meaning(rng, "train")) for _ in range(200))
    assert all(M.is_heldout(M.random_meaning(rng, "heldout")) for _ in range(200))
    assert {M.random_meaning(rng, "any") for _ in range(2000)} == set(meanings)
    with pytest.raises(ValueError):
        M.random_meaning(rng, "test")


# ---------------------------------------------------------------------------------------------
# generator and behaviour sources
# ---------------------------------------------------------------------------------------------


def test_generator_is_deterministic_given_the_rng() -> None:
    for m in M.all_meanings()[::7]:
        a, b = M.generate(m, random.Random(11), 48), M.generate(m, random.Random(11), 48)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, M.generate(m, random.Random(12), 48))
        for src in M.SOURCES:
            np.testing.assert_array_equal(M.behaviour(src, m, random.Random(3), 40),
                                          M.behaviour(src, m, random.Random(3), 40))


@pytest.mark.parametrize("frames", [40, 48, 60])
def test_clean_motions_keep_bone_lengths_and_stay_above_ground(frames: int) -> None:
    rng = random.Random(frames)
    for m in M.all_meanings():
        pos = M.generate(m, rng, frames)
        assert pos.shape == (frames, K.NUM_JOINTS, 3) and pos.dtype == np.float32
        lengths = np.linalg.norm(pos[:, 1:] - pos[:, list(K.PARENTS[1:])], axis=-1)
        assert np.abs(lengths / K.BONE_LENGTHS[1:] - 1).max() < 1e-5, m
        assert pos[..., 1].min() > -1e-4, m


def test_clean_motions_realise_their_meaning_with_exact_plausibility(draws, by_source) -> None:
    comps = M.score(draws, by_source["clean"])
    assert comps.min() >= 0.8
    assert comps.mean(0) == pytest.approx(np.ones(len(M.COMPONENTS)), abs=0.01)
    assert M.gold(comps).mean() == pytest.approx(M.MAX_GOLD, rel=0.01)


def test_wrong_attribute_and_wrong_action_helpers() -> None:
    rng = random.Random(6)
    for m in M.all_meanings():
        w = M.wrong_attribute(m, rng)
        assert w.action == m.action and sum(a != b for a, b in zip(w.ids(), m.ids())) == 1
        assert M.wrong_action(m, rng).action != m.action
    with pytest.raises(ValueError):
        M.behaviour("perfect", M.all_meanings()[0], rng, 48)


def test_each_wrong_attribute_costs_its_component() -> None:
    rng = random.Random(8)
    cases = [
        (M.Meaning("walk", "forward", "slow"), M.Meaning("walk", "backward", "slow"), "direction"),
        (M.Meaning("walk", "left", "slow"), M.Meaning("walk", "left", "fast"), "speed"),
        (M.Meaning("run", "right", "fast"), M.Meaning("run", "right", "slow"), "speed"),
        (M.Meaning("jump", "forward", reps=2), M.Meaning("jump", "forward", reps=1), "reps"),
        (M.Meaning("wave", side="left", reps=1), M.Meaning("wave", side="right", reps=1), "side"),
        (M.Meaning("kick", side="right", reps=2), M.Meaning("kick", side="right", reps=1), "reps"),
        (M.Meaning("turn", "left", "fast"), M.Meaning("turn", "right", "fast"), "direction"),
        (M.Meaning("sit_down", speed="slow"), M.Meaning("sit_down", speed="fast"), "speed"),
        (M.Meaning("crouch", reps=1), M.Meaning("crouch", reps=2), "reps"),
        (M.Meaning("walk", "forward", "fast"), M.Meaning("run", "forward", "slow"), "action"),
    ]
    for asked, done, lost in cases:
        comps = M.score([asked] * 8, np.stack([M.generate(done, rng, 48) for _ in range(8)])).mean(0)
        k = M.COMPONENTS.index(lost)
        assert comps[k] < 0.1, (asked, done, comps)
        # jerk is relative to the prompt's clean motions (a double crouch is jerkier than a single one)
        others = [i for i in range(len(M.COMPONENTS) - 1) if i != k and not (lost == "action" and i < 5)]
        assert comps[others].min() > 0.95, (asked, done, comps)


# ---------------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------------


def test_decoder_recovers_clean_meanings(draws, by_source) -> None:
    decoded = M.decode(by_source["clean"])
    for attr in M.ATTRIBUTES:
        truth = np.array([str(getattr(m, attr)) for m in draws])
        accuracy = float((decoded[attr].astype(str) == truth).mean())
        assert accuracy >= 0.9, (attr, accuracy)
    assert decoded["action_probability"].shape == (len(draws), len(M.ACTIONS) + 1)


@pytest.mark.parametrize("frames", [40, 60])
def test_decoder_works_at_other_clip_lengths(frames: int) -> None:
    rng = random.Random(frames + 1)
    meanings = M.all_meanings()
    decoded = M.decode(np.stack([M.generate(m, rng, frames) for m in meanings]))
    for attr in M.ATTRIBUTES:
        truth = np.array([str(getattr(m, attr)) for m in meanings])
        assert (decoded[attr].astype(str) == truth).mean() >= 0.9, attr


def test_oracle_orders_the_behaviour_sources(draws, by_source) -> None:
    means = {src: float(M.gold(M.score(draws, pos)).mean()) for src, pos in by_source.items()}
    ordered = ["clean", "jittered", "foot_skating", "wrong_direction", "truncated"]
    for better, worse in itertools.pairwise(ordered):
        assert means[better] > means[worse], means
    assert max(means, key=means.get) == "clean"
    assert {"wrong_action", "frozen"} == set(sorted(means, key=means.get)[:2]), means
    assert max(means["wrong_action"], means["frozen"]) < means["truncated"] - 2.0, means


def test_scores_are_bounded_and_finite_for_any_input(draws) -> None:
    g = np.random.default_rng(0)
    n = 16
    cases = [
        g.normal(size=(n, 48, K.NUM_JOINTS, 3)) * 3.0,
        np.zeros((n, 48, K.NUM_JOINTS, 3)),
        np.full((n, 48, K.NUM_JOINTS, 3), np.nan),
        np.where(g.random((n, 48, K.NUM_JOINTS, 3)) < 0.1, np.inf, g.normal(size=(n, 48, K.NUM_JOINTS, 3))),
        g.normal(size=(n, 48, K.NUM_JOINTS, 3)) * 1e6,
        g.normal(size=(n, 3, K.NUM_JOINTS, 3)),  # shorter than the jerk stencil
    ]
    for pos in cases:
        comps = M.score(draws[:n], pos)
        assert comps.shape == (n, len(M.COMPONENTS)) and np.isfinite(comps).all()
        assert comps.min() >= 0.0 and comps.max() <= 1.0
        gold = M.gold(comps)
        assert np.isfinite(gold).all() and (gold <= M.MAX_GOLD + 1e-6).all()
        decoded = M.decode(pos)
        assert set(decoded["action"]) <= {*M.ACTIONS, M.NONE}
    with pytest.raises(ValueError):
        M.score(draws[:2], np.zeros((3, 48, K.NUM_JOINTS, 3)))


def test_oracle_degrades_gracefully_with_feature_noise(draws, by_source) -> None:
    """Motions as a learned model would give them: noisy features through ``from_features``."""
    feats = K.to_features(by_source["clean"])
    std = np.maximum(feats.std((0, 1)), 1e-2)
    g = np.random.default_rng(1)
    golds = []
    for eps in (0.0, 0.05, 0.2, 1.0):
        pos = K.from_features(feats + eps * std * g.normal(size=feats.shape).astype(np.float32))
        comps = M.score(draws, pos)
        assert np.isfinite(comps).all()
        golds.append(float(M.gold(comps).mean()))
    assert all(a > b for a, b in itertools.pairwise(golds)), golds


def test_score_of_a_batch_matches_one_motion_at_a_time(by_source, draws) -> None:
    """Scoring (timed in benchmarks/motion_kernels.py) is row-wise: no motion sees another's."""
    pos, meanings = by_source["clean"][:8], draws[:8]
    comps = M.score(meanings, pos)
    assert comps.shape == (8, len(M.COMPONENTS))
    for i in (0, 5):
        np.testing.assert_allclose(comps[i], M.score(meanings[i:i + 1], pos[i:i + 1])[0], atol=1e-5)
