"""Patch efficacy: how much of a fine-tune's emergent misalignment a patch removes, with controls.

Emergent misalignment (EM) is the rise of the misaligned-answer rate on prompts the fine-tune
never trained on (the organism's off-domain advice and numbers prompts) over the base model. A
patch that mediates it brings the tuned rate back down; the measurements are those of Soligo et
al. 2025 (arXiv 2506.11618) and Arditi et al. 2024 (arXiv 2406.11717):

* :func:`patch_efficacy` (:class:`PatchEfficacy`): base, tuned and patched misaligned rates, so
  the **EM cut** ``(tuned - patched) / (tuned - base)`` and the **rate cut**
  ``(tuned - patched) / tuned`` (the organism's base rate is not 0, so the rate cut's ceiling is
  ``(tuned - base) / tuned``); the same patch along ``n_random`` norm-matched random directions
  (every draw's rate kept), the control a mediating direction must beat; for an ablation, the
  largest ``|logit difference|`` between :class:`~workbench.patches.Orthogonalize` (weight edit)
  and :class:`~workbench.patches.Ablate` (hooks), which are the same map; and the task loss (mean
  next-token NLL) of named text sets before and after the patch.
* :func:`transfer_efficacy` (:class:`TransferEfficacy`): a patch carried to another model through
  a fitted residual-stream map (:func:`~workbench.patches.transfer`), measured against the target's
  own patch: the **kept fraction** of its cut, the map's R², the cosine of the mapped direction
  with the target's own, and random source directions through the same map (Oozeer et al. 2025;
  Syed 2026's control).

Rates are judged by the subject's own judge (or ``judge=``) on sampled answers
(:func:`workbench.behaviour.judged_rates`). ``prompts`` is a list of prompts (one rate over all
of them) or a mapping of named groups (the mean of the groups' rates, each judged with the same
``seed``). Every random draw is seeded, so a result is reproducible from its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from workbench import execution
from workbench.behaviour import judged_rates
from workbench.patches._directions import random_direction
from workbench.patches._interventions import Ablate, Orthogonalize, Patch
from workbench.patches._transfer import fit_map, map_direction, transfer
from workbench.subjects import Judge, Subject

#: prompts a rate is judged on: one list, or named groups (the rate is the mean over groups)
Prompts = Sequence[str] | Mapping[str, Sequence[str]]


def misaligned_rate(
    subject: Subject,
    prompts: Prompts,
    *,
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
) -> float:
    """Share of sampled answers judged misaligned: over ``prompts``, or the mean over its groups."""
    if isinstance(prompts, Mapping):
        if not prompts:
            raise ValueError("no prompt groups: pass at least one named list of prompts")
        return float(np.mean([
            judged_rates(subject, list(group), judge=judge,
                         samples_per_prompt=samples_per_prompt, seed=seed).misaligned
            for group in prompts.values()
        ]))
    return judged_rates(subject, list(prompts), judge=judge,
                        samples_per_prompt=samples_per_prompt, seed=seed).misaligned


def task_loss(subject: Subject, texts: Sequence[str], batch_size: int = 512) -> float:
    """Mean next-token negative log-likelihood over the real tokens of ``texts`` (float64).

    The language-modelling task: a patch that removes a behaviour should leave it nearly intact.
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("no texts to score the task loss on: pass a list of documents")
    total, count = 0.0, 0.0
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            ids, mask = subject.encode(list(texts[s : s + batch_size]))
            nll, n = execution.per_example_nll(subject.model, ids, mask)
            total += float(nll.sum())
            count += float(n.sum())
    return total / count


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


@dataclass(frozen=True, eq=False)
class PatchEfficacy:
    """What a patch does to a fine-tune's misalignment (rates are shares of answers, 0..1).

    Attributes:
        patch: the patch measured.
        subject: fingerprint of the tuned subject it was applied to.
        base, tuned, patched: misaligned rates of the base model, the fine-tune, and the
            fine-tune under the patch.
        random: the rate under the same patch along each random direction (one per draw).
        random_seeds: the seed of each draw (:func:`~workbench.patches.random_direction`).
        weight_edit_max_abs: for an ablation, the largest ``|logit difference|`` between the
            weight edit (:class:`Orthogonalize`) and the hooks (:class:`Ablate`) on
            ``logit_prompts``; ``None`` when not measured.
        loss_tuned, loss_patched: task loss (:func:`task_loss`) of each named text set.
    """

    patch: Patch
    subject: str
    base: float
    tuned: float
    patched: float
    random: tuple[float, ...] = ()
    random_seeds: tuple[int, ...] = ()
    weight_edit_max_abs: float | None = None
    loss_tuned: Mapping[str, float] = field(default_factory=dict)
    loss_patched: Mapping[str, float] = field(default_factory=dict)

    @property
    def em(self) -> float:
        """Emergent misalignment: the rise of the misaligned rate over the base model."""
        return self.tuned - self.base

    @property
    def em_cut(self) -> float:
        """Share of the EM the patch removes, ``(tuned - patched) / (tuned - base)``."""
        return _ratio(self.tuned - self.patched, self.em)

    @property
    def rate_cut(self) -> float:
        """Share of the whole misaligned rate the patch removes, ``(tuned - patched) / tuned``."""
        return _ratio(self.tuned - self.patched, self.tuned)

    @property
    def random_mean(self) -> float:
        """Mean rate over the random draws (NaN without draws)."""
        return float(np.mean(self.random)) if self.random else math.nan

    @property
    def random_em_cut(self) -> float:
        """EM cut of the random control (its mean rate)."""
        return _ratio(self.tuned - self.random_mean, self.em)

    @property
    def random_rate_cut(self) -> float:
        """Rate cut of the random control (its mean rate)."""
        return _ratio(self.tuned - self.random_mean, self.tuned)

    @property
    def random_em_cut_max(self) -> float:
        """The largest ``|tuned - random draw|`` as a share of the EM (NaN without draws)."""
        if not self.random:
            return math.nan
        return _ratio(max(abs(self.tuned - r) for r in self.random), self.em)

    @property
    def loss_rise(self) -> dict[str, float]:
        """Relative task-loss rise per text set, ``patched / tuned - 1``."""
        return {k: self.loss_patched[k] / self.loss_tuned[k] - 1 for k in self.loss_tuned}

    def summary(self) -> dict[str, float | None]:
        """The efficacy a deployment record stores (``{"patch": ..., "efficacy": this}``)."""
        return {
            "base_misaligned": self.base,
            "tuned_misaligned": self.tuned,
            "ablated_misaligned": self.patched,
            "random_misaligned": self.random_mean,
            "em_cut": self.em_cut,
            "random_em_cut": self.random_em_cut,
            "orthogonalize_vs_ablate_max_abs": self.weight_edit_max_abs,
        }


def _weight_edit_gap(patch: Patch, subject: Subject, prompts: Sequence[str]) -> float | None:
    """Max |logits(Orthogonalize) - logits(Ablate)| for an ablation-type patch, else None."""
    if not isinstance(patch, Ablate | Orthogonalize):
        return None
    hooks = Ablate(patch.direction, patch.strength)
    edit = Orthogonalize(patch.direction, patch.strength)
    ids, _ = subject.encode(list(prompts))
    with hooks.applied(subject) as p:
        hooked = execution.logits(p.model, ids)
    with edit.applied(subject) as p:
        edited = execution.logits(p.model, ids)
    return float((edited - hooked).abs().max())


def patch_efficacy(
    base: Subject,
    tuned: Subject,
    patch: Patch,
    prompts: Prompts,
    *,
    n_random: int = 5,
    random_seed: int = 0,
    logit_prompts: Sequence[str] | None = None,
    task_texts: Mapping[str, Sequence[str]] | None = None,
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
) -> PatchEfficacy:
    """Measure ``patch`` on the fine-tune ``tuned`` of ``base``.

    Args:
        base, tuned: the base model and its fine-tune (neither is modified).
        patch: e.g. ``Ablate(mean_difference(tuned, misaligned, aligned, hook))``.
        prompts: where the misaligned rate is judged (off-domain prompts; a mapping of named
            groups averages the groups' rates).
        n_random: random directions (norm-matched, :func:`random_direction`) with seeds
            ``random_seed, random_seed + 1, ...``, each applied as the same kind of patch.
        logit_prompts: texts on which an ablation is compared with its weight edit (skipped
            when ``None``, and for patches that are not ablations).
        task_texts: named text sets whose task loss is measured before and after the patch.
        samples_per_prompt, seed, judge: how answers are sampled and judged
            (:func:`workbench.behaviour.judged_rates`); every rate uses the same ``seed``.

    Raises:
        ValueError: ``n_random < 0``, empty prompts, or a subject without a judge and none given.
    """
    if n_random < 0:
        raise ValueError(f"n_random={n_random}: the number of random directions must be >= 0")

    def rate(s: Subject) -> float:
        return misaligned_rate(s, prompts, samples_per_prompt=samples_per_prompt, seed=seed,
                               judge=judge)

    texts = dict(task_texts or {})
    base_rate, tuned_rate = rate(base), rate(tuned)
    with patch.applied(tuned) as p:
        patched_rate = rate(p)
        loss_patched = {k: task_loss(p, v) for k, v in texts.items()}
    gap = _weight_edit_gap(patch, tuned, logit_prompts) if logit_prompts is not None else None
    seeds = tuple(random_seed + i for i in range(n_random))
    randoms = []
    for s in seeds:
        control = replace(patch, direction=random_direction(patch.direction, seed=s))  # type: ignore[type-var]
        with control.applied(tuned) as p:
            randoms.append(rate(p))
    return PatchEfficacy(
        patch=patch,
        subject=tuned.fingerprint,
        base=base_rate,
        tuned=tuned_rate,
        patched=patched_rate,
        random=tuple(randoms),
        random_seeds=seeds,
        weight_edit_max_abs=gap,
        loss_tuned={k: task_loss(tuned, v) for k, v in texts.items()},
        loss_patched=loss_patched,
    )


@dataclass(frozen=True, eq=False)
class TransferEfficacy:
    """A patch moved to another model, measured against that model's own patch (rates 0..1).

    Attributes:
        patch: the transferred patch (its direction lives in the target).
        map_r2: R² of the residual-stream map (held out when ``map_held_out``).
        map_held_out: whether ``map_r2`` was scored on held-out prompts.
        map_tokens: tokens the map was fitted on.
        cosine: cosine of the transferred direction with the target's own direction.
        base: the target's base model's misaligned rate (``None`` when not measured).
        tuned: the target fine-tune's rate; native: under its own patch; transferred: under
            the transferred patch.
        random: the rate under random source directions moved through the same map (one per
            draw); random_seeds: their seeds.
    """

    patch: Patch
    map_r2: float
    map_held_out: bool
    map_tokens: int
    cosine: float
    base: float | None
    tuned: float
    native: float
    transferred: float
    random: tuple[float, ...] = ()
    random_seeds: tuple[int, ...] = ()

    @property
    def native_cut(self) -> float:
        """What the target's own patch removes, ``tuned - native``."""
        return self.tuned - self.native

    @property
    def kept(self) -> float:
        """Share of the native cut the transferred patch keeps, ``(tuned - transferred) / cut``."""
        return _ratio(self.tuned - self.transferred, self.native_cut)

    @property
    def random_mean(self) -> float:
        """Mean rate over the random draws (NaN without draws)."""
        return float(np.mean(self.random)) if self.random else math.nan

    @property
    def random_kept(self) -> float:
        """Kept fraction of the random control (its mean rate)."""
        return _ratio(self.tuned - self.random_mean, self.native_cut)

    def summary(self) -> dict[str, float | bool | None]:
        """JSON-able figures (for a record's ``efficacy``)."""
        return {
            "map_r2": self.map_r2,
            "map_held_out": self.map_held_out,
            "cosine_with_native": self.cosine,
            "base_misaligned": self.base,
            "tuned_misaligned": self.tuned,
            "native_misaligned": self.native,
            "transferred_misaligned": self.transferred,
            "kept": self.kept,
            "random_misaligned": self.random_mean,
            "random_kept": self.random_kept,
        }


def transfer_efficacy(
    patch: Patch,
    source: Subject,
    target: Subject,
    map_prompts: Sequence[str],
    prompts: Prompts,
    *,
    native: Patch | PatchEfficacy,
    base: Subject | None = None,
    n_random: int = 0,
    random_seed: int = 0,
    hook_name: str | None = None,
    ridge: float = 1e-4,
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
) -> TransferEfficacy:
    """Move ``patch`` from ``source`` to ``target`` and measure what it keeps.

    Args:
        patch: a patch whose direction was derived on ``source``.
        source, target: the two models (e.g. the same fine-tune of two organism seeds).
        map_prompts: shared texts the residual-stream map is fitted on (:func:`fit_map`).
        prompts: where the misaligned rate is judged (as in :func:`patch_efficacy`).
        native: the target's own patch (its rate is measured), or its already measured
            :class:`PatchEfficacy` on ``target`` (whose tuned and patched rates are reused; they
            must have been judged with the same prompts, samples and seed).
        base: the target's base model, to report its rate too.
        n_random: random source directions (norm-matched to the patch's, seeds
            ``random_seed + i``) moved through the same map and applied as the same patch.
        hook_name, ridge: where and how the map is fitted (default: the patch's hook).

    Raises:
        ValueError: the patch was not derived on ``source``, ``native`` was measured on another
            subject, or ``n_random < 0``.
    """
    if n_random < 0:
        raise ValueError(f"n_random={n_random}: the number of random directions must be >= 0")
    if isinstance(native, PatchEfficacy) and native.subject != target.fingerprint:
        raise ValueError(
            f"the native efficacy was measured on subject {native.subject[:12]}…, not on the "
            f"target {target.name} ({target.fingerprint[:12]}…); pass the target's own patch"
        )

    def rate(s: Subject) -> float:
        return misaligned_rate(s, prompts, samples_per_prompt=samples_per_prompt, seed=seed,
                               judge=judge)

    hook = hook_name or _patch_hook(patch)
    m = fit_map(source, target, map_prompts, hook, ridge=ridge)  # fitted once: moves and R²
    moved = transfer(patch, source, target, map_prompts, hook_name, ridge=ridge, residual_map=m)
    native_patch = native.patch if isinstance(native, PatchEfficacy) else native
    cosine = float(torch.nn.functional.cosine_similarity(
        moved.direction.vector.double(), native_patch.direction.vector.double(), dim=0))
    if isinstance(native, PatchEfficacy):
        tuned_rate, native_rate = native.tuned, native.patched
    else:
        tuned_rate = rate(target)
        with native.applied(target) as p:
            native_rate = rate(p)
    with moved.applied(target) as p:
        transferred = rate(p)
    seeds = tuple(random_seed + i for i in range(n_random))
    randoms = []
    for s in seeds:
        mapped = map_direction(random_direction(patch.direction, seed=s), m)
        control = replace(moved, direction=mapped)  # type: ignore[type-var]
        with control.applied(target) as p:
            randoms.append(rate(p))
    return TransferEfficacy(
        patch=moved,
        map_r2=m.r2,
        map_held_out=m.held_out,
        map_tokens=m.n_tokens,
        cosine=cosine,
        base=rate(base) if base is not None else None,
        tuned=tuned_rate,
        native=native_rate,
        transferred=transferred,
        random=tuple(randoms),
        random_seeds=seeds,
    )


def _patch_hook(patch: Patch) -> str:
    """The hook a patch's direction is read and mapped at (``Steer``'s own hook, if it has one)."""
    hook: Any = getattr(patch, "hook", None)
    return str(hook) if isinstance(hook, str) else patch.direction.hook_name
