"""Directions: vectors in one hook's activation space, and the ways to derive them.

:class:`Direction` is the value every other part of :mod:`workbench.patches` works on: the
patches in :mod:`~workbench.patches._interventions` apply one to a subject, the maps in
:mod:`~workbench.patches._transfer` carry one to another model. This module depends on neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from workbench.activations import Pool, hook_activations
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.fingerprint import state_dict_sha256
from workbench.subjects import Subject

SOURCES = ("mean-difference", "features", "random", "transfer")
"""How a :class:`Direction` was made."""


@dataclass(frozen=True, eq=False)
class Direction:
    """A vector in one hook's activation space.

    Attributes:
        vector: ``[d]`` float32 on the CPU, **not** normalised (a mean difference keeps its
            norm, in activation units). A copy of what was passed in.
        hook_name: the hook it was derived at, e.g. ``"blocks.0.hook_resid_post"``.
        subject: fingerprint of the subject it was derived on.
        name: human-readable name.
        source: ``"mean-difference"``, ``"features"``, ``"random"`` or ``"transfer"``.
    """

    vector: torch.Tensor
    hook_name: str
    subject: str
    name: str
    source: str

    def __post_init__(self) -> None:
        v = torch.as_tensor(self.vector).detach().to("cpu", torch.float32).clone()
        if v.ndim != 1 or v.numel() == 0:
            raise ValueError(f"a direction is a non-empty 1-D vector (got shape {list(v.shape)})")
        if not bool(torch.isfinite(v).all()):
            raise ValueError("the direction holds NaN or inf")
        if self.source not in SOURCES:
            raise ValueError(f"unknown direction source {self.source!r}; use one of {SOURCES}")
        object.__setattr__(self, "vector", v.contiguous())

    @property
    def d_model(self) -> int:
        """Width of the vector."""
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        """Euclidean norm of the vector."""
        return float(self.vector.double().norm())

    @property
    def unit(self) -> torch.Tensor:
        """The vector scaled to norm 1 (float32, CPU)."""
        n = self.vector.double().norm()
        if float(n) == 0.0:
            raise ValueError(
                f"direction {self.name!r} is the zero vector: it has no unit direction"
            )
        return (self.vector.double() / n).float()

    @property
    def sha256(self) -> str:
        """sha256 of the vector (:func:`workbench.fingerprint.state_dict_sha256`)."""
        return state_dict_sha256({"vector": self.vector})

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (everything but the vector, which is named by its sha256)."""
        return {
            "name": self.name,
            "source": self.source,
            "hook_name": self.hook_name,
            "subject": self.subject,
            "d_model": self.d_model,
            "norm": self.norm,
            "sha256": self.sha256,
        }


def _check_set(texts: Sequence[str], what: str) -> None:
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(
            f"the {what} prompt set is empty (or one string): pass a list of prompt texts, "
            "e.g. from workbench.organism.prompts.persona_prompts(n, seed)"
        )


def mean_difference(
    subject: Subject,
    positive: Sequence[str],
    negative: Sequence[str],
    hook_name: str,
    *,
    pool: Pool = "mean",
    name: str = "mean-difference",
    batch_size: int = 64,
) -> Direction:
    """Mean pooled activation at ``hook_name`` over ``positive`` minus that over ``negative``.

    Each prompt is pooled by :func:`workbench.activations.hook_activations` (``"mean"`` over its
    tokens, ``<bos>`` left out, or its ``"last"`` token). The difference is not normalised.
    """
    _check_set(positive, "positive")
    _check_set(negative, "negative")
    pos = hook_activations(subject, hook_name, positive, pool=pool, batch_size=batch_size)
    neg = hook_activations(subject, hook_name, negative, pool=pool, batch_size=batch_size)
    vec = pos.double().mean(0) - neg.double().mean(0)
    return Direction(vec.float(), hook_name, subject.fingerprint, name, "mean-difference")


def from_features(
    dictionary: Dictionary,
    features: FeatureSet,
    n: int = 8,
    *,
    subject: Subject | str | None = None,
) -> Direction:
    """Effect-weighted sum of the top ``n`` features' unit decoder rows.

    ``vector = Σ_i effect_i · W_dec[i] / ‖W_dec[i]‖`` over the ``n`` strongest features of
    ``features`` (Cohen's d keeps its sign, so features higher on the positive set push towards
    it and features higher on the negative set push away). The norm is in effect-size units, not
    activation units: scale it with ``Steer(alpha=...)``.

    Args:
        subject: the subject (or its fingerprint) to record; default ``features.subject``.

    Raises:
        ValueError: ``features`` was computed with another dictionary, or ``n < 1``.
    """
    if features.dictionary != dictionary.fingerprint:
        raise ValueError(
            f"this FeatureSet was computed with another dictionary (fingerprint "
            f"{features.dictionary[:12]}…, not {dictionary.name!r} {dictionary.fingerprint[:12]}…);"
            " recompute it with contrast(subject, dictionary, ...)"
        )
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    top = features.top(n)
    if len(top) == 0:
        raise ValueError("the FeatureSet holds no features")
    rows = dictionary.W_dec.detach().to("cpu", torch.float64)[list(top.indices)]
    norms = rows.norm(dim=1, keepdim=True)
    units = torch.where(norms > 0, rows / norms.clamp_min(1e-300), torch.zeros_like(rows))
    effect = torch.tensor(top.effect, dtype=torch.float64)
    vec = (effect[:, None] * units).sum(0)
    fp = subject.fingerprint if isinstance(subject, Subject) else (subject or features.subject)
    return Direction(
        vec.float(), dictionary.hook_name, fp, f"{features.name} top-{len(top)}", "features"
    )


def random_direction(like: Direction, seed: int) -> Direction:
    """A Gaussian direction with the norm, width, hook and subject of ``like`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(like.d_model, generator=g, dtype=torch.float64)
    v = v / v.norm() * like.norm
    return Direction(
        v.float(), like.hook_name, like.subject, f"random-{seed} ~ {like.name}", "random"
    )
