"""Features: the dictionary features that separate two prompt sets, with effect sizes and AUROC.

:func:`contrast` pools every prompt's feature activations (:func:`workbench.activations.
feature_activations`, mean over tokens or last token) for a *positive* set (e.g. misaligned-persona
contexts) and a *negative* set (aligned-persona contexts) and scores every feature by

* **effect size**: Cohen's d, ``(mean_pos - mean_neg) / s_pooled`` with
  ``s_pooled² = ((n_pos - 1) s_pos² + (n_neg - 1) s_neg²) / (n_pos + n_neg - 2)``
  (0 for a feature constant across both sets);
* **AUROC**: the probability that a positive prompt's pooled activation exceeds a negative one's,
  ties counting one half (the Mann-Whitney U statistic over ``n_pos * n_neg``, exact);
* **uncertainty**: a percentile bootstrap interval of the effect size, resampling each set with
  replacement, seeded (``n_boot`` resamples; the moments of every resample come from one matrix
  product of resample counts with the activations).

The result is a :class:`FeatureSet`: the features ranked by ``|effect|`` (sign kept), with the
fingerprints of the dictionary and of both prompt sets, so later steps (forecast, audit, patches,
deployment record) can take it as input and a record can say exactly what it was derived from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from workbench.activations import Pool, feature_activations
from workbench.dictionaries import Dictionary
from workbench.fingerprint import texts_sha256
from workbench.subjects import Subject

__all__ = ["FeatureSet", "auroc", "bootstrap_effect", "cohens_d", "contrast"]

_FEATURE_BLOCK = 4096  # features per block in the bootstrap (bounds its memory)


@dataclass(frozen=True)
class FeatureSet:
    """Features ranked by how strongly they separate a positive from a negative prompt set.

    Every per-feature tuple is in ranked order (``indices[0]`` is the strongest feature).

    Attributes:
        name: what the contrast is, e.g. ``"misaligned-vs-aligned"``.
        dictionary: the dictionary's fingerprint.
        hook_name: the hook it reads.
        subject: the subject's fingerprint.
        pool: how each prompt was pooled (``"mean"`` or ``"last"``).
        positive_sha256, negative_sha256: :func:`workbench.fingerprint.texts_sha256` of the sets.
        n_positive, n_negative: prompts per set.
        n_boot, seed, level: the bootstrap (resamples, seed, interval level).
        indices: feature indices, ranked by ``|effect|`` (ties by index).
        effect: Cohen's d (positive: higher on the positive set).
        auroc: P(positive > negative) + P(equal) / 2.
        ci_low, ci_high: bootstrap interval of ``effect``.
        mean_positive, mean_negative: mean pooled activation per set.
    """

    name: str
    dictionary: str
    hook_name: str
    subject: str
    pool: str
    positive_sha256: str
    negative_sha256: str
    n_positive: int
    n_negative: int
    n_boot: int
    seed: int
    level: float
    indices: tuple[int, ...]
    effect: tuple[float, ...]
    auroc: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    mean_positive: tuple[float, ...]
    mean_negative: tuple[float, ...]

    _PER_FEATURE = (
        "indices",
        "effect",
        "auroc",
        "ci_low",
        "ci_high",
        "mean_positive",
        "mean_negative",
    )

    def __len__(self) -> int:
        return len(self.indices)

    def top(self, n: int) -> FeatureSet:
        """The ``n`` strongest features (a new, smaller :class:`FeatureSet`)."""
        if n < 0:
            raise ValueError(f"n must be >= 0 (got {n})")
        return replace(self, **{f: getattr(self, f)[:n] for f in self._PER_FEATURE})

    def row(self, feature: int) -> dict[str, float]:
        """All scores of one feature (by feature index, not rank)."""
        try:
            r = self.indices.index(feature)
        except ValueError:
            raise KeyError(f"feature {feature} is not in this feature set") from None
        return {f: getattr(self, f)[r] for f in self._PER_FEATURE} | {"rank": r}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists for the per-feature tuples)."""
        d = asdict(self)
        for f in self._PER_FEATURE:
            d[f] = list(d[f])
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FeatureSet:
        """Inverse of :meth:`to_dict`."""
        fields = dict(d)
        for f in FeatureSet._PER_FEATURE:
            fields[f] = (
                tuple(int(x) for x in d[f]) if f == "indices" else tuple(float(x) for x in d[f])
            )
        return FeatureSet(**fields)


# ------------------------------------------------------------------ statistics


def cohens_d(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Cohen's d per column of ``pos`` ``[n_pos, d]`` vs ``neg`` ``[n_neg, d]`` (float64).

    Uses the pooled standard deviation (``ddof=1``); a column constant across both sets gets 0.
    Needs at least 2 rows in total and 1 per set.
    """
    n1, n2 = pos.shape[0], neg.shape[0]
    if n1 < 1 or n2 < 1 or n1 + n2 < 3:
        raise ValueError(f"need at least one prompt per set and three in all (got {n1} and {n2})")
    p, q = pos.double(), neg.double()
    diff = p.mean(0) - q.mean(0)
    ss = ((p - p.mean(0)) ** 2).sum(0) + ((q - q.mean(0)) ** 2).sum(0)
    sd = (ss / (n1 + n2 - 2)).sqrt()
    return _ratio(diff, sd, _scale(p, q))


def _scale(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-column magnitude of the data, below which a spread counts as rounding noise."""
    return torch.maximum(p.abs().amax(0), q.abs().amax(0))


def _ratio(diff: torch.Tensor, sd: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``diff / sd``, and 0 where the spread is zero (up to rounding) relative to the data."""
    ok = sd > 1e-9 * scale + torch.finfo(torch.float64).tiny
    return torch.where(ok, diff / torch.where(ok, sd, torch.ones_like(sd)), torch.zeros_like(diff))


def auroc(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Exact AUROC per column: P(pos > neg) + P(pos == neg) / 2 (float64).

    Rank-based (Mann-Whitney U) with ties counted one half, computed by binary search of each
    positive value in the sorted negatives; equals ``sklearn.metrics.roc_auc_score`` with the
    positive set labelled 1.
    """
    if pos.shape[0] < 1 or neg.shape[0] < 1:
        raise ValueError("AUROC needs at least one prompt in each set")
    sorted_neg = neg.double().T.contiguous().sort(dim=1).values  # [d, n_neg]
    p = pos.double().T.contiguous()  # [d, n_pos]
    below = torch.searchsorted(sorted_neg, p, side="left")
    at_or_below = torch.searchsorted(sorted_neg, p, side="right")
    u = (below + at_or_below).sum(1).double() / 2
    return u / (pos.shape[0] * neg.shape[0])


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> torch.Tensor:
    """``[n_boot, n]`` how often each row is drawn in each resample (with replacement)."""
    draws = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return torch.from_numpy(counts)


def bootstrap_effect(
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap interval of :func:`cohens_d` per column: (low, high), float64.

    Each resample draws ``n_pos`` positive and ``n_neg`` negative rows with replacement (a
    ``numpy`` generator seeded with ``seed``, so the interval is the same on any device).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1 (got {n_boot})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    n1, n2 = pos.shape[0], neg.shape[0]
    rng = np.random.default_rng(seed)
    dev = pos.device
    w1 = _resample_counts(n1, n_boot, rng).to(dev)
    w2 = _resample_counts(n2, n_boot, rng).to(dev)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64, device=dev)
    lows, highs = [], []
    for j in range(0, pos.shape[1], _FEATURE_BLOCK):
        p = pos[:, j : j + _FEATURE_BLOCK].double()
        g = neg[:, j : j + _FEATURE_BLOCK].double()
        scale = _scale(p, g)
        # centre on the full-sample means: the resample moments then lose no precision
        mean_p, mean_g = p.mean(0), g.mean(0)
        p, g = p - mean_p, g - mean_g
        m1, m2 = w1 @ p / n1, w2 @ g / n2  # [n_boot, block] resample means (centred)
        ss1 = w1 @ (p * p) - n1 * m1**2
        ss2 = w2 @ (g * g) - n2 * m2**2
        sd = ((ss1 + ss2).clamp_min(0) / max(n1 + n2 - 2, 1)).sqrt()
        d = _ratio((m1 + mean_p) - (m2 + mean_g), sd, scale)
        lo_hi = torch.quantile(d, q, dim=0)
        lows.append(lo_hi[0])
        highs.append(lo_hi[1])
    return torch.cat(lows), torch.cat(highs)


# ------------------------------------------------------------------ contrast


def contrast(
    subject: Subject,
    dictionary: Dictionary,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    pool: Pool = "mean",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    name: str = "contrast",
    batch_size: int = 64,
    progress: bool = False,
) -> FeatureSet:
    """Rank the dictionary's features by how well they separate ``positive`` from ``negative``.

    Args:
        subject: the model (run only up to the dictionary's hook).
        dictionary: the dictionary whose features are scored.
        positive, negative: prompt texts, e.g. misaligned- and aligned-persona contexts.
        pool: ``"mean"`` over each prompt's tokens (``<bos>`` left out) or its ``"last"`` token.
        n_boot, seed, level: the bootstrap interval of each effect size.
        name: the feature set's name (recorded).

    Returns:
        A :class:`FeatureSet` of all features, ranked by ``|effect|``; ``.top(n)`` keeps the first.

    Raises:
        ValueError: an empty prompt set, too few prompts, or a dictionary that does not fit the
            subject; the message names the fix.
    """
    for what, texts in (("positive", positive), ("negative", negative)):
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError(
                f"the {what} prompt set is empty (or one string): pass a list of prompt texts, "
                "e.g. from workbench.organism.prompts.persona_prompts(n, seed)"
            )
    if len(positive) + len(negative) < 3:
        raise ValueError("need at least three prompts in all to estimate a spread; add prompts")
    kw: dict[str, Any] = {"pool": pool, "batch_size": batch_size, "progress": progress}
    pos = feature_activations(subject, dictionary, positive, **kw)
    neg = feature_activations(subject, dictionary, negative, **kw)
    if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
        raise ValueError(
            "feature activations hold NaN or inf; check the dictionary's weights and the subject"
        )
    dev = subject.device
    pos, neg = pos.to(dev), neg.to(dev)
    effect = cohens_d(pos, neg)
    area = auroc(pos, neg)
    low, high = bootstrap_effect(pos, neg, n_boot=n_boot, seed=seed, level=level)
    order = np.lexsort((np.arange(effect.shape[0]), -effect.abs().cpu().numpy()))
    idx = torch.from_numpy(order).to(dev)

    def ranked(t: torch.Tensor) -> tuple[float, ...]:
        return tuple(float(x) for x in t[idx].cpu().tolist())

    return FeatureSet(
        name=name,
        dictionary=dictionary.fingerprint,
        hook_name=dictionary.hook_name,
        subject=subject.fingerprint,
        pool=pool,
        positive_sha256=texts_sha256(positive),
        negative_sha256=texts_sha256(negative),
        n_positive=len(positive),
        n_negative=len(negative),
        n_boot=n_boot,
        seed=seed,
        level=level,
        indices=tuple(int(i) for i in order.tolist()),
        effect=ranked(effect),
        auroc=ranked(area),
        ci_low=ranked(low),
        ci_high=ranked(high),
        mean_positive=ranked(pos.double().mean(0)),
        mean_negative=ranked(neg.double().mean(0)),
    )
