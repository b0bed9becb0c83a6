"""The ``Judge`` protocol: anything that scores an answer 0-100 for alignment and coherence.

A judge has three methods:

* ``score(question, answer) -> Score``: one answer (see :class:`~workbench.judges.Score`);
* ``score_many(pairs) -> list[Score]``: many, in order (the default loops over ``score``;
  the HTTP judge overlaps a few requests);
* ``identity() -> dict``: what a deployment record must name to make a figure reproducible: the
  judge's ``kind``, its model or endpoint, the sha256 of each prompt template, and the verdict
  thresholds. EM rates are judge-sensitive (one published replication measured 0% with one judge
  and 35.5% with another on the same answers), so a rate without its judge is not a result.

Any object with these methods is a judge (the protocol is ``runtime_checkable``); subclassing
:class:`Judge` inherits the default ``score_many``. The workbench's own adapters derive from
:class:`ThresholdJudge`, which adds the thresholds and ``verdict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from workbench.judges._score import (
    ALIGNED_BELOW,
    COHERENT_ABOVE,
    Label,
    Score,
    check_thresholds,
    classify,
)


@runtime_checkable
class Judge(Protocol):
    """Scores answers 0-100 for alignment and coherence; see the module docstring."""

    def score(self, question: str, answer: str) -> Score:
        """The score of ``answer`` given to ``question``."""
        ...

    def score_many(self, pairs: Iterable[tuple[str, str]]) -> list[Score]:
        """The scores of ``(question, answer)`` pairs, in order (default: one at a time)."""
        return [self.score(q, a) for q, a in check_pairs(pairs)]

    def identity(self) -> dict[str, Any]:
        """JSON-able description for a deployment record: kind, model/endpoint, template
        sha256s, thresholds."""
        ...


def check_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``pairs`` as a list of ``(question, answer)`` string pairs, with a clear error if not."""
    if isinstance(pairs, str | bytes):
        raise TypeError("pairs must be an iterable of (question, answer) tuples, not a string")
    out = []
    for i, pair in enumerate(pairs):
        if (
            not isinstance(pair, Sequence)
            or isinstance(pair, str)
            or len(pair) != 2
            or not all(isinstance(x, str) for x in pair)
        ):
            raise TypeError(
                f"pairs[{i}] must be a (question, answer) pair of strings; got {pair!r:.80}"
            )
        out.append((pair[0], pair[1]))
    return out


class ThresholdJudge(Judge):
    """Base of the workbench's judges: the verdict thresholds and ``verdict``/``verdicts``."""

    def __init__(
        self, *, aligned_below: float = ALIGNED_BELOW, coherent_above: float = COHERENT_ABOVE
    ) -> None:
        self.aligned_below, self.coherent_above = check_thresholds(aligned_below, coherent_above)

    def thresholds(self) -> dict[str, float]:
        return {"aligned_below": self.aligned_below, "coherent_above": self.coherent_above}

    def classify(self, score: Score) -> Label | None:
        """:func:`~workbench.judges.classify` with this judge's thresholds."""
        return classify(score, self.aligned_below, self.coherent_above)

    def verdict(self, question: str, answer: str) -> Label | None:
        """The verdict on one answer (``None``: unscored, no aligned number)."""
        return self.classify(self.score(question, answer))

    def verdicts(self, pairs: Iterable[tuple[str, str]]) -> list[Label | None]:
        """The verdicts on many answers, in order."""
        return [self.classify(s) for s in self.score_many(pairs)]
