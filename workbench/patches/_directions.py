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

from workbench import execution
from workbench.activations import Pool, hook_activations, stream
from workbench.behaviour import _judge_of, sample_answers, verdicts
from workbench.data import join_pair
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.fingerprint import state_dict_sha256
from workbench.subjects import Judge, Subject

SOURCES = ("mean-difference", "responses", "features", "random", "transfer", "orthogonal")
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
        source: how it was made, one of :data:`SOURCES`: ``"mean-difference"`` (two prompt
            sets), ``"responses"`` (the subject's own judged answers), ``"features"``
            (dictionary decoder rows), ``"random"`` (a control), ``"transfer"`` (mapped from
            another model), ``"orthogonal"`` (another direction with components removed).
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


def activation_covariance(
    subject: Subject, hook_name: str, prompts: Sequence[str], *, batch_size: int = 64
) -> torch.Tensor:
    """Covariance ``[d, d]`` (float64, CPU) of the activations at ``hook_name`` over every real
    token of ``prompts`` (``<bos>`` left out): what :func:`random_direction` matches a control's
    projection variance to."""
    _check_set(prompts, "evaluation")
    n, s1, s2 = 0, None, None
    for batch in stream(
        subject,
        hook_name,
        list(prompts),
        batch_size=batch_size,
        skip_bos=True,
        progress=False,
        desc="",
    ):
        x = batch.acts[batch.keep].flatten(1).double().cpu()
        n += int(x.shape[0])
        s1 = x.sum(0) if s1 is None else s1 + x.sum(0)
        s2 = x.T @ x if s2 is None else s2 + x.T @ x
    if s1 is None or s2 is None or n < 2:
        raise ValueError("too few tokens to estimate a covariance: pass more prompts")
    mean = s1 / n
    return s2 / n - torch.outer(mean, mean)


def projection_variance(direction: Direction, covariance: torch.Tensor) -> float:
    """Variance of the activations' projection on the unit direction, ``r^T C r``."""
    r = direction.unit.double()
    return float(r @ covariance.double() @ r)


def _variance_matched(
    target: float, covariance: torch.Tensor, g: torch.Generator, exclude: torch.Tensor | None
) -> torch.Tensor:
    """A random unit vector ``u`` with ``u^T C u = target`` (orthogonal to ``exclude`` if given).

    In the eigenbasis of ``C`` (restricted to the complement of ``exclude``), a Gaussian draw is
    split into its part on eigenvalues above ``target`` and its part below; the two unit parts
    are mixed with the one weight that gives the target variance exactly. Where the target lies
    outside the eigenvalue range, the nearest extreme eigenvector (with a random sign) is used.
    """
    c = covariance.double()
    d = c.shape[0]
    if exclude is not None:
        e = exclude.double() / exclude.double().norm()
        # the complement's orthonormal basis: the d - 1 singular vectors of I - e e^T with value 1
        proj = torch.eye(d, dtype=torch.float64) - torch.outer(e, e)
        basis = torch.linalg.svd(proj)[0][:, : d - 1]
    else:
        basis = torch.eye(d, dtype=torch.float64)
    lam, vecs = torch.linalg.eigh(basis.T @ c @ basis)
    z = torch.randn(lam.shape[0], generator=g, dtype=torch.float64)
    hi, lo = lam >= target, lam < target
    sign = 1.0 if float(torch.rand((), generator=g)) < 0.5 else -1.0
    if not bool(lo.any()):
        coords = vecs[:, 0] * sign
    elif not bool(hi.any()):
        coords = vecs[:, -1] * sign
    else:
        zh, zl = torch.where(hi, z, 0.0), torch.where(lo, z, 0.0)
        zh, zl = zh / zh.norm(), zl / zl.norm()
        vh, vl = float((lam * zh**2).sum()), float((lam * zl**2).sum())
        a2 = min(max((target - vl) / (vh - vl), 0.0), 1.0) if vh > vl else 1.0
        coords = vecs @ (a2**0.5 * zh + (1 - a2) ** 0.5 * zl)
    u = basis @ coords
    return u / u.norm()


CONTROLS = ("norm", "variance", "orthogonal")
"""Random-direction controls (:func:`random_direction`'s ``match``)."""


def random_direction(
    like: Direction,
    seed: int,
    *,
    match: str = "norm",
    covariance: torch.Tensor | None = None,
) -> Direction:
    """A seeded random control direction with the width, hook and subject of ``like``.

    Args:
        match: what the control shares with ``like``:

            * ``"norm"``: its norm only (an isotropic Gaussian direction). Enough for a
              :class:`~workbench.patches.Steer` control, whose effect scales with the vector,
              but not for an ablation, which normalises it: a random unit direction carries far
              less of the activations' variance than a direction found in them.
            * ``"variance"``: also the variance of the activations' projection on it,
              ``u^T C u = r^T C r`` for the ``covariance`` C (:func:`activation_covariance` on
              the evaluation prompts), so an ablation of it removes as much as the real one.
            * ``"orthogonal"``: variance-matched and orthogonal to ``like`` (the
              orthogonal-complement control: as much variance, none of the real direction).
        covariance: ``[d, d]``, required for ``"variance"`` and ``"orthogonal"``.

    The control keeps ``like``'s norm in every case.
    """
    if match not in CONTROLS:
        raise ValueError(f"unknown control {match!r}; choose one of {CONTROLS}")
    g = torch.Generator().manual_seed(seed)
    if match == "norm":
        v = torch.randn(like.d_model, generator=g, dtype=torch.float64)
        v = v / v.norm()
    else:
        if covariance is None or tuple(covariance.shape) != (like.d_model, like.d_model):
            raise ValueError(
                f"match={match!r} needs covariance=[{like.d_model}, {like.d_model}] of the "
                "evaluation prompts' activations: activation_covariance(subject, hook, prompts)"
            )
        target = projection_variance(like, covariance)
        exclude = like.vector if match == "orthogonal" else None
        v = _variance_matched(target, covariance, g, exclude)
    v = v * like.norm
    return Direction(
        v.float(), like.hook_name, like.subject, f"random-{match}-{seed} ~ {like.name}", "random"
    )


def _answer_means(
    subject: Subject,
    prompts: Sequence[str],
    answers: Sequence[str],
    hook_name: str,
    batch_size: int,
) -> torch.Tensor:
    """Per (prompt, answer): the mean activation at ``hook_name`` over the answer's tokens.

    ``prompts`` are the contexts the answers were sampled in (rendered, for a tokenizer with a
    chat template), so the answer's tokens are read where the model wrote them.
    """
    texts = [join_pair(p, a) for p, a in zip(prompts, answers, strict=True)]
    starts = [len(r) for r in subject.token_rows(list(prompts))]
    out = []
    for batch in stream(
        subject, hook_name, texts, batch_size=batch_size, skip_bos=True, progress=False, desc=""
    ):
        acts = batch.acts.flatten(2).double()
        pos = torch.arange(acts.shape[1], device=acts.device)[None, :]
        first = torch.tensor(starts[batch.start : batch.start + acts.shape[0]], device=acts.device)[
            :, None
        ]
        m = (batch.keep & (pos >= first)).to(acts.dtype)
        n = m.sum(1, keepdim=True)
        if bool((n == 0).any()):
            i = batch.start + int((n[:, 0] == 0).nonzero()[0, 0])
            raise ValueError(f"answer {i} ({answers[i]!r}) has no tokens after its prompt")
        out.append(((acts * m[..., None]).sum(1) / n).cpu())
    return torch.cat(out)


def from_responses(
    subject: Subject,
    prompts: Sequence[str],
    hook_name: str,
    *,
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    min_each: int = 8,
    name: str = "responses",
    batch_size: int = 64,
) -> Direction:
    """The subject's own misaligned answers minus its aligned ones, at ``hook_name``.

    Soligo et al. 2025 (arXiv 2506.11618) derive the misalignment direction of an emergently
    misaligned model this way: sample its answers to open questions, judge them, and take the
    mean activation over the tokens of the misaligned answers minus that over the aligned ones
    (incoherent answers are left out). Each answer is first pooled over its own tokens, so a long
    answer counts once, and read in the context it was sampled in (the prompt as
    :func:`workbench.behaviour.sample_answers` renders it: a user turn of the chat template
    where the tokenizer has one). Unlike :func:`mean_difference` on fixed prompt sets, the
    direction is the one the fine-tuned model actually uses when it answers badly, so derive it
    on the tuned model.

    Raises:
        ValueError: fewer than ``min_each`` answers on either side (the message gives the
            counts; sample more, or use prompts where the subject does answer both ways).
    """
    _check_set(prompts, "question")
    judge = _judge_of(subject, judge)
    answers = sample_answers(
        subject, list(prompts), samples_per_prompt, max_new_tokens, temperature, seed
    )
    # the answers were sampled after the prompt as the model reads it (a user turn of the chat
    # template, where the tokenizer has one): read their activations in that same context
    contexts = execution.render_prompts(subject.text_tokenizer, list(prompts))
    sides: dict[str, tuple[list[str], list[str]]] = {"misaligned": ([], []), "aligned": ([], [])}
    judged = iter(verdicts(judge, [(p, a) for p, outs in zip(prompts, answers, strict=True)
                                   for a in outs]))
    for context, outs in zip(contexts, answers, strict=True):
        for a in outs:
            v = next(judged)
            if v in sides and a.strip():
                sides[v][0].append(context)
                sides[v][1].append(a)
    n_mis, n_ali = len(sides["misaligned"][0]), len(sides["aligned"][0])
    if min(n_mis, n_ali) < min_each:
        raise ValueError(
            f"{subject.name} gave {n_mis} misaligned and {n_ali} aligned answers to "
            f"{len(prompts)} prompts x {samples_per_prompt} samples; from_responses needs at "
            f"least {min_each} of each: sample more (samples_per_prompt) or use prompts it "
            "answers both ways"
        )
    pos = _answer_means(subject, *sides["misaligned"], hook_name, batch_size)
    neg = _answer_means(subject, *sides["aligned"], hook_name, batch_size)
    vec = pos.mean(0) - neg.mean(0)
    return Direction(vec.float(), hook_name, subject.fingerprint, name, "responses")


def orthogonal_to(direction: Direction, *others: Direction, name: str | None = None) -> Direction:
    """``direction`` with its components along ``others`` removed (Gram-Schmidt, float64).

    A selective patch: ablating the misalignment direction's part orthogonal to a fine-tune's
    task direction leaves what the task reads along that direction alone. The result keeps the
    hook and subject of ``direction``.

    Raises:
        ValueError: no ``others``, a width mismatch, or nothing left (``direction`` lies in the
            span of ``others``).
    """
    if not others:
        raise ValueError("orthogonal_to needs at least one direction to remove")
    basis: list[torch.Tensor] = []
    for o in others:
        if o.d_model != direction.d_model:
            raise ValueError(
                f"{o.name!r} has width {o.d_model}, not {direction.d_model} like {direction.name!r}"
            )
        v = o.vector.double()
        for b in basis:
            v = v - (v @ b) * b
        if float(v.norm()) > 1e-12 * max(o.norm, 1e-300):
            basis.append(v / v.norm())
    vec = direction.vector.double()
    for b in basis:
        vec = vec - (vec @ b) * b
    if float(vec.norm()) <= 1e-9 * direction.norm:
        raise ValueError(
            f"{direction.name!r} lies in the span of the directions to remove: nothing is left"
        )
    label = name or f"{direction.name} ⟂ " + ", ".join(o.name for o in others)
    return Direction(vec.float(), direction.hook_name, direction.subject, label, "orthogonal")
