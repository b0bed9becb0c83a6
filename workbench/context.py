"""Deployment context: does a model behave differently when a context looks like a test?

A model that can tell evaluation from deployment can pass an audit and misbehave afterwards
(Nguyen et al. 2025 probe for this "evaluation awareness"). The audit here compares two
**framings** of the same material, e.g. prompts opened by the organism's ``eval`` or ``deploy``
token:

* the **misaligned rate** under each framing (sampled answers, judged), and their **gap**
  ``b - a``;
* a **framing contrast**: :func:`workbench.contrast` of framing ``b``'s contexts against framing
  ``a``'s (by default at the last token, where the answer is produced), so the features the
  framing moves are ranked like any other contrast;
* one row per **watched feature** (e.g. the persona features): its effect in the watched set
  beside its framing effect and AUROC, which says whether the framing reaches the features that
  carry the behaviour.

The module takes the prompts as arguments (:class:`Framing`), so it knows nothing of the
organism's grammar: for a real model, pass any two framings of one prompt set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.activations import Pool
from workbench.behaviour import judged_rates
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet, contrast
from workbench.subjects import Judge, Subject

__all__ = ["ContextAudit", "ContextFeature", "Framing", "context_audit"]


@dataclass(frozen=True)
class Framing:
    """One framing of the audit's material.

    Attributes:
        name: e.g. ``"eval"`` or ``"deploy"``.
        prompts: prompts whose answers are sampled and judged under this framing.
        contexts: documents under this framing whose features are contrasted (e.g. the
            misaligned-persona documents, framed).
    """

    name: str
    prompts: Sequence[str]
    contexts: Sequence[str]

    def __post_init__(self) -> None:
        for what in ("prompts", "contexts"):
            value = getattr(self, what)
            if isinstance(value, str) or len(value) == 0:
                raise ValueError(
                    f"Framing({self.name!r}): {what} is empty (or one string); pass a list of "
                    "texts under this framing"
                )


@dataclass(frozen=True)
class ContextFeature:
    """A watched feature under the two framings."""

    feature: int
    persona_effect: float  # its effect in the watched set (e.g. misaligned vs aligned persona)
    framing_effect: float  # Cohen's d, framing b minus framing a
    framing_auroc: float

    def to_dict(self) -> dict[str, float | int]:
        return {"feature": self.feature, "persona_effect": self.persona_effect,
                "framing_effect": self.framing_effect, "framing_auroc": self.framing_auroc}


@dataclass(frozen=True, eq=False)
class ContextAudit:
    """The misaligned rate under two framings, and what the framing does to the features.

    Attributes:
        framing_a, framing_b: the framings' names.
        misaligned_a, misaligned_b: misaligned-answer rates (0..1) under each.
        framing: the contrast of framing b's contexts against framing a's (every feature).
        features: the watched features' rows, in the watched set's order.
    """

    framing_a: str
    framing_b: str
    misaligned_a: float
    misaligned_b: float
    framing: FeatureSet
    features: tuple[ContextFeature, ...]

    @property
    def gap(self) -> float:
        """``misaligned_b - misaligned_a``: positive when framing b is answered worse."""
        return self.misaligned_b - self.misaligned_a

    def summary(self) -> dict[str, Any]:
        """The deployment record's ``context_audits`` entry."""
        return {
            "framing_a": self.framing_a,
            "framing_b": self.framing_b,
            "misaligned_a": self.misaligned_a,
            "misaligned_b": self.misaligned_b,
            "gap": self.gap,
            "features": [f.to_dict() for f in self.features],
        }


def context_audit(
    subject: Subject,
    dictionary: Dictionary,
    a: Framing,
    b: Framing,
    *,
    watch: FeatureSet,
    n_watch: int = 10,
    pool: Pool = "last",
    n_boot: int = 1000,
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
    name: str | None = None,
) -> ContextAudit:
    """Audit ``subject`` under framings ``a`` and ``b``.

    Args:
        subject: the model audited (e.g. the fine-tune); it needs a judge, or pass ``judge``.
        dictionary: the dictionary the framing contrast reads.
        a, b: the two framings; the gap and the contrast are ``b`` minus ``a``.
        watch: the features reported row by row (its ``n_watch`` strongest), e.g. the persona
            contrast; their ``persona_effect`` is their effect in this set.
        pool: how each context is pooled for the contrast (default: its last token).
        n_boot, seed: the contrast's bootstrap; ``seed`` also seeds the sampled answers.
        samples_per_prompt: sampled answers per prompt.
        name: the framing contrast's name (default ``"<b>-vs-<a> framing"``).

    Raises:
        ValueError: ``n_watch < 1``, two framings of one name, or a subject without a judge and
            none given.
    """
    if a.name == b.name:
        raise ValueError(f"both framings are named {a.name!r}; give the two framings two names")
    if n_watch < 1:
        raise ValueError(f"n_watch={n_watch}: report at least one watched feature")
    rates = {
        f.name: judged_rates(subject, list(f.prompts), judge=judge,
                             samples_per_prompt=samples_per_prompt, seed=seed).misaligned
        for f in (a, b)
    }
    framing = contrast(subject, dictionary, list(b.contexts), list(a.contexts), pool=pool,
                       n_boot=n_boot, seed=seed, name=name or f"{b.name}-vs-{a.name} framing")
    rows = []
    for f in watch.top(n_watch).indices:
        row = framing.row(f)
        rows.append(ContextFeature(int(f), float(watch.row(f)["effect"]), float(row["effect"]),
                                   float(row["auroc"])))
    return ContextAudit(
        framing_a=a.name,
        framing_b=b.name,
        misaligned_a=rates[a.name],
        misaligned_b=rates[b.name],
        framing=framing,
        features=tuple(rows),
    )
