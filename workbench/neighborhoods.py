"""Neighbourhoods: one feature's superposition neighbours, geometry and co-activation side by side.

The claim the workbench operationalises is that features sharing representation directions are
strengthened together by a fine-tune. Two things make a neighbour matter: it sits near the feature
in the dictionary's decoder geometry (cosine of decoder rows), and it is active in the same
contexts. :func:`neighborhood` reports both for one feature:

* **geometry**: the cosine of the feature's decoder row with every other row (one row against
  ``W_dec``, ``d_sae x d_in`` work, so no blocked all-pairs search is needed; the all-pairs
  search lives in :mod:`workbench.geometry`), keeping the ``k`` largest ``|cosine|`` at or above
  ``threshold``, sign kept (a negative cosine is an anti-aligned direction);
* **co-activation** on a prompt set (optional): for each neighbour, P(neighbour fires | feature
  fires), P(feature fires | neighbour fires) and the Pearson correlation of the two features'
  token-level activations, from :func:`workbench.activations.collect` with dense columns of just
  these features (memory ``n_tokens x (k + 1)``).

The result, :class:`FeatureNeighborhood`, is a frozen dataclass with ``to_dict``/``from_dict``
(the widget that draws one is :class:`workbench.widgets.Neighborhood`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from workbench.activations import FeatureStats, collect
from workbench.dictionaries import Dictionary
from workbench.subjects import Subject

__all__ = ["FeatureNeighborhood", "Neighbor", "decoder_cosines", "neighborhood"]


@dataclass(frozen=True)
class Neighbor:
    """One geometric neighbour of a feature.

    Attributes:
        feature: the neighbour's index.
        cosine: cosine of the two decoder rows (sign kept).
        p_fires_given_feature: P(neighbour fires | feature fires) on the prompt set's tokens.
        p_feature_given_fires: P(feature fires | neighbour fires).
        correlation: Pearson correlation of their token-level activations.

    The co-activation fields are ``None`` without a prompt set, or when undefined (a feature
    that never fires, a constant activation).
    """

    feature: int
    cosine: float
    p_fires_given_feature: float | None = None
    p_feature_given_fires: float | None = None
    correlation: float | None = None


@dataclass(frozen=True)
class FeatureNeighborhood:
    """The superposition neighbourhood of one feature.

    Attributes:
        feature: the feature.
        dictionary: the dictionary's fingerprint.
        hook_name: the hook it reads.
        threshold, k: the selection (``|cosine| >= threshold``, at most ``k``).
        neighbors: ranked by ``|cosine|`` (ties by index).
        n_tokens: tokens the co-activation was measured on (0 without a prompt set).
        frequency: the feature's own firing frequency on those tokens (``None`` without).
        prompts_sha256: fingerprint of the prompt set (``None`` without).
    """

    feature: int
    dictionary: str
    hook_name: str
    threshold: float
    k: int
    neighbors: tuple[Neighbor, ...]
    n_tokens: int = 0
    frequency: float | None = None
    prompts_sha256: str | None = None

    @property
    def indices(self) -> tuple[int, ...]:
        """The neighbours' feature indices, ranked."""
        return tuple(n.feature for n in self.neighbors)

    @property
    def cosines(self) -> tuple[float, ...]:
        """The neighbours' cosines, ranked."""
        return tuple(n.cosine for n in self.neighbors)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        d = asdict(self)
        d["neighbors"] = [asdict(n) for n in self.neighbors]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FeatureNeighborhood:
        """Inverse of :meth:`to_dict`."""
        fields = dict(d)
        fields["neighbors"] = tuple(Neighbor(**n) for n in d["neighbors"])
        return FeatureNeighborhood(**fields)


def decoder_cosines(W_dec: torch.Tensor, feature: int) -> torch.Tensor:
    """Cosine of decoder row ``feature`` with every row, ``[d_sae]`` float32 (0 for zero rows)."""
    W = W_dec.detach()
    if not 0 <= feature < W.shape[0]:
        raise ValueError(f"feature {feature} out of range: the dictionary has {W.shape[0]}")
    norms = W.float().norm(dim=1)
    row = W[feature].float()
    if float(norms[feature]) == 0.0:
        raise ValueError(f"feature {feature} has a zero decoder row (a dead feature): no direction")
    dots = W.float() @ row
    return torch.where(norms > 0, dots / (norms * norms[feature]).clamp_min(1e-30), 0.0)


def _undefined_to_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _coactivation(
    stats: FeatureStats, feature: int, others: Sequence[int]
) -> tuple[list[tuple[float | None, float | None, float | None]], float]:
    """(P(other | feature), P(feature | other), Pearson r) per other; the feature's frequency."""
    f = stats.dense_column(feature).double()
    f_on = f > 0
    out = []
    for j in others:
        g = stats.dense_column(j).double()
        g_on = g > 0
        both = float((f_on & g_on).sum())
        n_f, n_g = float(f_on.sum()), float(g_on.sum())
        fc, gc = f - f.mean(), g - g.mean()
        denom = float(fc.norm() * gc.norm())
        r = float((fc * gc).sum()) / denom if denom > 0 else math.nan
        out.append(
            (
                _undefined_to_none(both / n_f if n_f else math.nan),
                _undefined_to_none(both / n_g if n_g else math.nan),
                _undefined_to_none(r),
            )
        )
    return out, float(f_on.double().mean())


def neighborhood(
    dictionary: Dictionary,
    feature: int,
    *,
    threshold: float = 0.3,
    k: int = 16,
    prompts: Sequence[str] | None = None,
    subject: Subject | None = None,
    stats: FeatureStats | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> FeatureNeighborhood:
    """The decoder-cosine neighbours of ``feature``, with their co-activation on a prompt set.

    Args:
        dictionary: the dictionary.
        feature: the feature whose neighbourhood is wanted.
        threshold: keep neighbours with ``|cosine| >= threshold``.
        k: keep at most this many (the largest ``|cosine|``; ties by index).
        prompts, subject: measure co-activation on these prompts' tokens (both needed);
            or pass ``stats`` from :func:`workbench.activations.collect` with ``keep_dense``
            covering the feature and its neighbours.
        batch_size, progress: for the collection run.

    Raises:
        ValueError: a feature out of range or dead, a bad threshold or k, prompts without a
            subject, or dense activations that do not cover the neighbourhood.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a |cosine| in [0, 1] (got {threshold})")
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    if (prompts is None) != (subject is None):
        raise ValueError("co-activation needs both prompts= and subject= (or pass stats=)")
    if prompts is not None and stats is not None:
        raise ValueError("pass either prompts= and subject= or stats=, not both")
    cos = decoder_cosines(dictionary.W_dec, feature).cpu()
    cos[feature] = 0.0  # never its own neighbour
    mag = cos.abs()
    order = sorted(
        (i for i in (mag >= threshold).nonzero().flatten().tolist() if i != feature),
        key=lambda i: (-float(mag[i]), i),
    )[:k]
    neighbors = [Neighbor(i, float(cos[i])) for i in order]

    if prompts is not None and subject is not None:
        stats = collect(
            subject,
            dictionary,
            prompts,
            batch_size=batch_size,
            top_k_contexts=0,
            keep_dense=[feature, *order],
            progress=progress,
        )
    if stats is None:
        return FeatureNeighborhood(
            feature, dictionary.fingerprint, dictionary.hook_name, threshold, k, tuple(neighbors)
        )
    if stats.dictionary != dictionary.fingerprint:
        raise ValueError(
            "stats were collected with another dictionary (fingerprints differ); collect them "
            "with this one"
        )
    co, freq = _coactivation(stats, feature, order)
    neighbors = [
        Neighbor(n.feature, n.cosine, p_ng, p_gn, r)
        for n, (p_ng, p_gn, r) in zip(neighbors, co, strict=True)
    ]
    return FeatureNeighborhood(
        feature=feature,
        dictionary=dictionary.fingerprint,
        hook_name=dictionary.hook_name,
        threshold=threshold,
        k=k,
        neighbors=tuple(neighbors),
        n_tokens=stats.n_tokens,
        frequency=freq,
        prompts_sha256=stats.prompts_sha256,
    )

