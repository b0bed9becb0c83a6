"""Forecast a fine-tune's alignment cost before running it, from the base model and the data.

The account of emergent misalignment in arXiv 2605.00842 (Minegishi et al. 2026) is geometric: a
fine-tune that strengthens the features its data needs also strengthens the features that share
their directions. This module turns that into a first-order prediction.

**Derivation.** Let ``θ`` be what the fine-tune trains (a ``SteeringVector``: one vector ``v`` added
to the residual stream at the dictionary's hook; ``Full``: every weight) and ``L(θ)`` the
fine-tune's loss, the mean negative log-likelihood of the completion tokens. The forecast follows
the first gradient-descent step, ``δθ = -∇L`` (one unit step; a real run takes many steps of an
adaptive optimiser, which rescales the step and can turn it: the forecast is a first-order
prediction, validated against the real fine-tune by :func:`workbench.audit`). The residual stream at
the hook of an evaluation token ``t`` then moves by the Jacobian-vector product ``δx_t = (∂x_t/∂θ)
δθ``; for ``steer`` that is exactly ``δx_t = -∇_v L`` at every token. A
dictionary feature ``f`` reads its pre-activation ``a_f = x · W_enc[:, f] + b`` (ReLU, TopK and
JumpReLU SAEs all read an affine function of ``x``), so its predicted shift is

    Δ_f = mean_t δx_t · W_enc[:, f].

The **alignment risk** of the fine-tune for a watched :class:`~workbench.features.FeatureSet`
(e.g. the features that separate a misaligned from an aligned persona, ``effect`` = Cohen's d,
positive when the feature is higher on the misaligned side) is

    risk = Σ_{f ∈ watched} d_f Δ_f,

positive when the fine-tune pushes the watched features toward the misaligned side. Because
``risk`` is linear in ``δθ`` it splits over the examples: with ``r = ∇_θ R`` the gradient of the
watched read-out ``R(θ) = mean_t Σ_f d_f a_f(x_t)``, example ``i``'s **per-sample risk** is
``-∇L_i · r``, the risk of a step on that example alone (for screening data, as the
paper's removal of the samples closest to toxic features). For ``steer``
``r = W_enc[:, watched] d``; for ``full`` the products are taken by central differences in
float64 along ``δθ`` and ``r``.

The **geometric path** says why: the *target features* are those the step raises most on the
fine-tune's own tokens (what the data asks for), and each watched feature is linked to the target
feature whose decoder direction it shares most (cosine), with its share of the risk.

Cost: one forward and backward pass over the (deduplicated) fine-tune examples and a few over the
evaluation prompts, against ``steps x batch_size`` example passes for the fine-tune itself;
``benchmarks/alignment.py`` reports the ratio.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench import execution
from workbench._device import cpu_threads
from workbench.data import encode_pairs, pairs_sha256, unique_pairs
from workbench.dictionaries import Dictionary, check_compatible
from workbench.features import FeatureSet
from workbench.fingerprint import texts_sha256
from workbench.specs import FinetuneSpec, LoRA, SteeringVector, as_spec
from workbench.subjects import Subject

__all__ = ["Forecast", "RiskPath", "forecast"]


@dataclass(frozen=True)
class RiskPath:
    """One watched feature, the fine-tune target feature it shares a direction with, and why.

    Attributes:
        watched: the watched feature's index.
        target: the target feature (raised by the fine-tune on its own data) nearest in direction.
        cosine: cosine of the two decoder directions.
        watched_shift: predicted shift of the watched feature on the evaluation prompts.
        target_shift: predicted shift of the target feature on the fine-tune's tokens.
        contribution: ``d_watched * watched_shift``, the watched feature's share of the risk.
    """

    watched: int
    target: int
    cosine: float
    watched_shift: float
    target_shift: float
    contribution: float


@dataclass(frozen=True, eq=False)
class Forecast:
    """The predicted effect of a fine-tune, computed before it runs.

    Attributes:
        method: the fine-tune method forecast (``"steer"`` or ``"full"``).
        spec: the description of the fine-tune spec forecast (``spec.describe()``); the audit
            refuses a fine-tune made with another spec.
        subject, dictionary: fingerprints of the base model and the dictionary.
        hook_name: the dictionary's hook.
        watch: the watched feature set's name.
        data_sha256, eval_sha256: fingerprints of the fine-tune data and the evaluation prompts.
        n_examples, n_unique: fine-tune examples, and distinct ones (each is computed once).
        predicted_shift: ``[d_sae]`` predicted pre-activation shift of every feature on the
            evaluation prompts, for one unit gradient step.
        watched, weights: the watched features and their weights (Cohen's d).
        risk: ``Σ weights · predicted_shift[watched]``; > 0 means toward the positive side.
        sample_risk: ``[n_examples]`` per-example risk (same units; the mean over examples,
            weighted by their completion tokens, equals ``risk``).
        paths: the geometric paths, largest ``|contribution|`` first.
        grad_norm: norm of the fine-tune loss gradient.
        seconds: wall-clock time of the forecast.
    """

    method: str
    spec: dict[str, Any]
    subject: str
    dictionary: str
    hook_name: str
    watch: str
    data_sha256: str
    eval_sha256: str
    n_examples: int
    n_unique: int
    predicted_shift: torch.Tensor
    watched: tuple[int, ...]
    weights: tuple[float, ...]
    risk: float
    sample_risk: torch.Tensor
    paths: tuple[RiskPath, ...]
    grad_norm: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def riskiest(self, fraction: float) -> np.ndarray:
        """Indices of the ``fraction`` of examples with the highest per-sample risk.

        Ties are broken by example index, so the choice is deterministic.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1] (got {fraction})")
        n = round(fraction * self.n_examples)
        order = np.lexsort((np.arange(self.n_examples), -self.sample_risk.numpy()))
        return np.sort(order[:n])

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (no per-feature or per-sample arrays)."""
        return {
            "method": self.method,
            "spec": self.spec,
            "subject": self.subject,
            "dictionary": self.dictionary,
            "hook_name": self.hook_name,
            "watch": self.watch,
            "data_sha256": self.data_sha256,
            "eval_sha256": self.eval_sha256,
            "n_examples": self.n_examples,
            "n_unique": self.n_unique,
            "risk": self.risk,
            "grad_norm": self.grad_norm,
            "seconds": self.seconds,
            "paths": [p.__dict__ for p in self.paths],
        }


# ------------------------------------------------------------------ inputs


def _check_watch(watch: FeatureSet, dictionary: Dictionary, n_watch: int | None) -> FeatureSet:
    if watch.dictionary != dictionary.fingerprint:
        raise ValueError(
            f"the watched FeatureSet {watch.name!r} was computed with another dictionary "
            f"(fingerprint {watch.dictionary[:12]}…, this one is {dictionary.fingerprint[:12]}…); "
            "recompute it with workbench.contrast(subject, dictionary, ...)"
        )
    w = watch.top(n_watch) if n_watch is not None else watch
    if len(w) == 0:
        raise ValueError("the watched FeatureSet is empty; pass at least one feature")
    return w


def _token_level(subject: Subject, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and the mask of evaluation tokens (real tokens, ``<bos>`` left out)."""
    if not prompts:
        raise ValueError("no evaluation prompts: pass at least one prompt")
    ids, mask = subject.encode(list(prompts))
    keep = mask.clone()
    keep[:, 0] = False
    if not bool(keep.any()):
        raise ValueError("the evaluation prompts have no tokens after <bos>; pass longer prompts")
    return ids, keep


# ------------------------------------------------------------------ the two methods


def _steer_grads(
    subject: Subject, hook: str, ids: torch.Tensor, target: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's gradient w.r.t. a vector added at ``hook`` (``[n, d]``), and its tokens.

    One vector per example, broadcast over its positions, so one backward pass gives every
    example's own gradient (of its summed completion NLL).
    """
    model = subject.model
    grads, counts = [], []
    for s in range(0, len(ids), batch_size):
        b_ids, b_tgt = ids[s : s + batch_size], target[s : s + batch_size]
        v = torch.zeros(len(b_ids), 1, subject.d_model, device=subject.device, requires_grad=True)
        # scoped: removes only this hook, never the caller's (a patch in force stays in force)
        with execution.hooks(model, [execution.add_vector(hook, v)]):
            nll, cnt = execution.per_example_nll(model, b_ids, b_tgt)
        (g,) = torch.autograd.grad(nll.sum(), v)
        grads.append(g[:, 0].double().cpu())
        counts.append(cnt.cpu())
    return torch.cat(grads), torch.cat(counts)


def _full_jvp(
    model: torch.nn.Module,
    hook: str,
    ids: torch.Tensor,
    keep: torch.Tensor,
    direction: dict[str, torch.Tensor],
    eps: float,
) -> torch.Tensor:
    """Central-difference derivative of the hook activations on ``keep`` tokens along a step."""
    params = dict(model.named_parameters())
    outs = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            for k, p in params.items():
                p.add_(sign * eps * direction[k])
            outs.append(execution.run_to_hook(model, ids, hook, grad=True)[keep].clone())
            for k, p in params.items():
                p.sub_(sign * eps * direction[k])
    return (outs[0] - outs[1]) / (2 * eps)


def _norm(tensors: Mapping[str, torch.Tensor]) -> float:
    return float(torch.sqrt(torch.stack([(t.double() ** 2).sum() for t in tensors.values()]).sum()))


def _step_size(direction: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> float:
    """A finite-difference step that moves the weights by ~1e-4 of their norm."""
    return 1e-4 * _norm(params) / max(_norm(direction), 1e-300)


# ------------------------------------------------------------------ forecast


def forecast(
    subject: Subject,
    dictionary: Dictionary,
    finetune_data: Sequence[tuple[str, str]],
    *,
    watch: FeatureSet,
    eval_prompts: Sequence[str],
    spec: FinetuneSpec | str = "steer",
    n_watch: int | None = 16,
    n_targets: int = 8,
    batch_size: int = 256,
    dedupe: bool = True,
) -> Forecast:
    """Predict a fine-tune's feature shifts and alignment risk from the base model alone.

    Args:
        subject: the base model (never modified).
        dictionary: the SAE whose features are forecast; the steer vector sits at its hook.
        finetune_data: the (prompt, completion) pairs the fine-tune would train on.
        watch: alignment-relevant features (e.g. from :func:`workbench.contrast` on misaligned vs
            aligned persona prompts); their signed effect sizes weight the risk.
        eval_prompts: where the shifts are predicted (what the audit will measure).
        spec: the fine-tune forecast: :class:`~workbench.specs.SteeringVector` (its vector at
            the dictionary's hook) or :class:`~workbench.specs.Full`; ``"steer"`` and
            ``"full"`` are shorthands. The forecast records it, and :func:`workbench.audit`
            refuses a fine-tune made with another.
        n_watch: use the ``n_watch`` strongest watched features (``None``: all of them).
        n_targets: target features reported in the geometric paths.
        dedupe: compute each distinct example once (exact: equal examples have equal
            gradients); ``False`` computes every example, for timing comparisons.

    Returns:
        A :class:`Forecast`. See the module docstring for the derivation.

    Raises:
        ValueError: empty data or data with no completion tokens, a FeatureSet from another
            dictionary, an unknown spec or one not forecast (LoRA; a steering vector away
            from the dictionary's hook), no evaluation prompts.
    """
    spec = as_spec(spec)
    if isinstance(spec, LoRA):
        raise ValueError(
            "a LoRA forecast is not implemented yet; forecast SteeringVector(...) or Full() "
            "(a LoRA's first step moves the weights like a restricted Full step)"
        )
    check_compatible(subject, dictionary)
    if isinstance(spec, SteeringVector):
        spec.check(subject.n_layers, subject.name)
        if spec.hook_name != dictionary.hook_name:
            raise ValueError(
                f"a SteeringVector forecast predicts the vector at the dictionary's hook "
                f"({dictionary.hook_name!r}), but this spec adds it at {spec.hook_name!r}; use a "
                "dictionary at that hook, the SteeringVector(layer) of the dictionary, or Full()"
            )
    method = spec.method
    w = _check_watch(watch, dictionary, n_watch)
    if not finetune_data:
        raise ValueError("no fine-tune examples: pass at least one (prompt, completion) pair")
    t0 = time.perf_counter()
    unique, inverse = unique_pairs(finetune_data)
    if not dedupe:
        unique, inverse = [unique[i] for i in inverse], np.arange(len(inverse))
    ids, target = encode_pairs(subject, unique)
    if not bool(target[:, 1:].any()):
        raise ValueError(
            "the fine-tune data has no completion tokens: every (prompt, completion) pair needs a "
            "non-empty completion"
        )
    eval_ids, eval_keep = _token_level(subject, eval_prompts)
    hook = dictionary.hook_name
    W_enc = dictionary.W_enc.detach().to(torch.float64).cpu()  # [d_in, d_sae]
    idx = torch.tensor(w.indices)
    weights = torch.tensor(w.effect, dtype=torch.float64)
    readout = W_enc[:, idx] @ weights  # [d_in]: d R / d x at one token
    mult = torch.from_numpy(np.bincount(inverse, minlength=len(unique))).double()

    with cpu_threads(1, subject.device):
        if isinstance(spec, SteeringVector):
            g_i, c_i = _steer_grads(subject, hook, ids, target, batch_size)
            n_tok = (mult * c_i).sum()
            grad = (mult[:, None] * g_i).sum(0) / n_tok  # ∇_v of the fine-tune's mean NLL
            delta = -grad
            shift = delta @ W_enc  # the same δx at every evaluation token
            per_unique = -(g_i @ readout) / c_i.clamp_min(1)  # risk of a step on that example alone
            target_dx = delta[None]
            extra: dict[str, Any] = {}
        else:
            shift, per_unique, grad_norm_full, target_dx = _full(
                subject, hook, ids, target, eval_ids, eval_keep, readout, mult, W_enc
            )
            grad = torch.tensor([grad_norm_full])
            extra = {}

    risk = float(shift[idx] @ weights)
    target_shift = (target_dx @ W_enc).mean(0)
    paths = _paths(dictionary, w, shift, target_shift, n_targets)
    sample_risk = per_unique[torch.from_numpy(inverse)].float()
    return Forecast(
        method=method,
        spec=spec.describe(),
        subject=subject.fingerprint,
        dictionary=dictionary.fingerprint,
        hook_name=hook,
        watch=w.name,
        data_sha256=pairs_sha256(finetune_data),
        eval_sha256=texts_sha256(eval_prompts),
        n_examples=len(finetune_data),
        n_unique=len(unique),
        predicted_shift=shift.float(),
        watched=tuple(int(i) for i in idx),
        weights=tuple(float(x) for x in weights),
        risk=risk,
        sample_risk=sample_risk,
        paths=paths,
        grad_norm=float(grad.norm()),
        seconds=time.perf_counter() - t0,
        extra=extra,
    )


def _full(
    subject: Subject,
    hook: str,
    ids: torch.Tensor,
    target: torch.Tensor,
    eval_ids: torch.Tensor,
    eval_keep: torch.Tensor,
    readout: torch.Tensor,
    mult: torch.Tensor,
    W_enc: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """The ``full`` method: weight gradients, then central differences in float64."""
    model = execution.copy_model(subject.model, dtype=torch.float64)
    params = dict(model.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    # ∇θ L: the token-weighted mean completion NLL over all examples
    nll, cnt = execution.per_example_nll(model, ids, target)
    loss = (mult * nll).sum() / (mult * cnt).sum()
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    delta = {
        k: (-g if g is not None else torch.zeros_like(p))
        for (k, p), g in zip(params.items(), grads, strict=True)
    }
    # r = ∇θ R, R = mean over evaluation tokens of the watched read-out
    x = execution.run_to_hook(model, eval_ids, hook, grad=True)[eval_keep]
    R = (x @ readout.to(x)).mean()
    r_grads = torch.autograd.grad(R, list(params.values()), allow_unused=True)
    r = {
        k: (g if g is not None else torch.zeros_like(p))
        for (k, p), g in zip(params.items(), r_grads, strict=True)
    }
    with torch.no_grad():
        eps = _step_size(delta, params)
        dx = _full_jvp(model, hook, eval_ids, eval_keep, delta, eps)  # [N_eval_tok, d]
        shift = (dx @ W_enc.to(dx)).mean(0)
        target_dx = _full_jvp(model, hook, ids, target, delta, eps)
        # per-example risk: -∇L_i · r as the derivative of each example's mean NLL along r
        eps_r = _step_size(r, params)
        outs = []
        for sign in (1.0, -1.0):
            for k, p in params.items():
                p.add_(sign * eps_r * r[k])
            nll_s, _ = execution.per_example_nll(model, ids, target)
            outs.append(nll_s)
            for k, p in params.items():
                p.sub_(sign * eps_r * r[k])
        per_unique = -((outs[0] - outs[1]) / (2 * eps_r)) / cnt.clamp_min(1)
    grad_norm = _norm(delta)
    return shift.cpu(), per_unique.cpu(), grad_norm, target_dx.cpu()


def _paths(
    dictionary: Dictionary,
    w: FeatureSet,
    shift: torch.Tensor,
    target_shift: torch.Tensor,
    n_targets: int,
) -> tuple[RiskPath, ...]:
    """Link each watched feature to the most similar target feature (decoder cosine)."""
    D = dictionary.W_dec.detach().to(torch.float64).cpu()
    D = D / D.norm(dim=1, keepdim=True).clamp_min(1e-12)
    targets = torch.argsort(target_shift, descending=True)[: max(1, n_targets)]
    out = []
    for f, d in zip(w.indices, w.effect, strict=True):
        cos = D[targets] @ D[f]
        j = int(torch.argmax(cos.abs()))
        t = int(targets[j])
        out.append(
            RiskPath(
                watched=int(f),
                target=t,
                cosine=float(cos[j]),
                watched_shift=float(shift[f]),
                target_shift=float(target_shift[t]),
                contribution=float(d * shift[f]),
            )
        )
    out.sort(key=lambda p: -abs(p.contribution))
    return tuple(out)
