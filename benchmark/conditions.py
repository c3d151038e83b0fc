"""Benchmark conditions: named variations of data and feedback (a leaderboard axis).

The analysis papers become conditions: data coverage (Song et al. 2024, HyPO), rater
populations (Monti et al. 2019), label noise (B-Pref), and budgets. Every condition is generic:
it acts on the offline pool and the feedback channel, never on a domain's internals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from benchmark.feedback import AnnotatorConfig, RaterPopulationConfig


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    annotator: AnnotatorConfig = field(default_factory=AnnotatorConfig)
    raters: RaterPopulationConfig = field(default_factory=RaterPopulationConfig)
    coverage_drop: float = 0.0
    """Fraction of the offline pool's best samples (by gold reward) removed: partial coverage."""
    data_fraction: float = 1.0
    """Fraction of offline contexts kept."""
    feedback_scale: float = 1.0
    """Multiplier on the preset's feedback budget."""
    pool_part: str = ""
    """Keep only this named part of the offline pool (``OfflinePool.parts``, e.g. a dataset kind of the
    multi-agent domain); n/a on a domain whose pool has no such part. Empty: the whole pool."""
    invert: bool = False
    """Reverse every label (pairs, thumbs, demonstrations, the feedback channel and the judge). Never
    a leaderboard condition: the conformance suite's check that an algorithm learns in the
    direction of its labels (``benchmark.checks``)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def flipped(self) -> Condition:
        """This condition with every label reversed."""
        return replace(self, name=f"{self.name}+flipped", invert=True,
                       description=f"{self.description}; every label reversed")


#: MARLHF's (Zhang et al. 2024) dataset kinds, parts of the multi-agent domain's pool
DATASET_KIND_MEANINGS = {
    "pure-expert": "every episode from the scripted experts",
    "mix-expert": "3 expert : 1 random episodes",
    "mix-unilateral": "2 expert : 1 random : 1 unilateral (one learner random, the rest expert)",
    "diversified": "expert, noisy, slow, weak, random and unilateral episodes (15:6:6:3:15:15)",
}

CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in [
        Condition(
            "default",
            "3 rater clusters close to the gold weights, Bradley–Terry noise at 0.3 σ, full coverage",
        ),
        Condition(
            "partial-coverage",
            "the offline pool misses its best 30% (by gold reward): offline data do not cover the "
            "good region (HyPO's coverage condition)",
            coverage_drop=0.3,
        ),
        Condition(
            "heterogeneous-raters",
            "4 rater clusters whose weights spread widely and may invert non-primary components: "
            "aggregation averages the signal away",
            raters=RaterPopulationConfig(n_raters=24, n_clusters=4, dispersion=0.8, flip=0.35),
        ),
        Condition(
            "noisy-labels",
            "B-Pref faults: BT noise at 1 σ, 20% mistakes, ties under 0.1 σ, 10% skipped",
            annotator=AnnotatorConfig(temperature=1.0, mistake=0.2, equal=0.1, skip=0.1),
        ),
        *[Condition(kind, f"the multi-agent pool's {kind} dataset only ({meaning}; MARLHF's dataset kinds)",
                    pool_part=kind) for kind, meaning in DATASET_KIND_MEANINGS.items()],
        Condition(
            "low-budget",
            "10% of the offline contexts and 10% of the feedback budget",
            data_fraction=0.1,
            feedback_scale=0.1,
        ),
    ]
}


#: Conditions with a strength: ``name@value`` is the condition with its knob set to ``value``
#: (``partial-coverage@0.6`` drops the pool's best 60%), for sweeps such as HyPO's coverage result.
KNOBS = {
    "partial-coverage": ("coverage_drop", 0.0, 0.99, "the fraction of the pool's best samples removed"),
    "low-budget": ("data_fraction", 0.01, 1.0, "the fraction of offline contexts and of the feedback budget kept"),
}


def condition_at(name: str, raw: str) -> Condition:
    """``name@raw``: the named condition with its strength knob (:data:`KNOBS`) set; ValueError
    with the valid range when ``raw`` is not a number in it."""
    knob, lo, hi, meaning = KNOBS[name]
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}@{raw}: the strength must be a number in [{lo}, {hi}] ({meaning})") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name}@{raw}: the strength must be in [{lo}, {hi}] ({meaning})")
    base = CONDITIONS[name]
    changes: dict = {knob: value}
    if name == "low-budget":
        changes["feedback_scale"] = value
    return replace(base, name=f"{name}@{raw}", description=f"{base.description} (strength {knob}={value:g})",
                   **changes)
