"""Forecast a fine-tune's alignment cost before running it, from the base model and the data.

The account of emergent misalignment in arXiv 2605.00842 (Minegishi et al. 2026) is geometric: a
fine-tune that strengthens the features its data needs also strengthens the features that share
their directions. This module turns that into a first-order prediction.

**Derivation.** Let ``θ`` be what the fine-tune trains and ``L(θ)`` its loss, the mean negative
log-likelihood of the completion tokens (every token of the data weighted equally):

* ``SteeringVector``: one vector ``v`` added to the residual stream at the dictionary's hook;
* ``LoRA``: by default (``lora="rank"``) the target weights, each moving by the best
  rank-``r`` approximation of its step (below); with ``lora="first"`` the adapters' ``B``
  (``[r, d_out]``, zero at the start), with ``A`` (``[d_in, r]``) drawn exactly as
  :func:`workbench.finetune` draws it for the same ``seed`` (``N(0, 1/d_in)``) and the weight
  ``W + A @ B * s`` (``s = alpha / rank``) in the matrix layout of :mod:`workbench.finetunes`
  (per-head attention weights flattened);
* ``Full``: every trainable weight.

The forecast follows the fine-tune's first optimiser step, per unit learning rate, with the
gradient of the whole data (a real fine-tune's first step sees one batch of it):

* ``step="sgd"``: ``δθ = -∇L``;
* ``step="adam"``: Adam's first step is ``-lr m̂ / (√v̂ + ε)`` with ``m̂ = g`` and ``v̂ = g²``, so
  ``δθ = -∇L / (|∇L| + ε)`` per coordinate: the sign of the gradient (``ε = 1e-8``, torch's and
  :func:`workbench.finetune`'s; weight decay, which Full would add as ``λθ`` to ``g``, is not
  modelled). Adam does turn the direction: every coordinate moves by the same amount, whatever its
  gradient.

Later steps differ from the first (the data changes the model, Adam's moments change the step):
the forecast is a first-order prediction, validated against the real fine-tune by
:func:`workbench.audit`.

For a LoRA, ``∇_A L = s ∇_W L Bᵀ = 0`` at ``B = 0`` (Adam's step on ``A`` is zero too), and
``∇_B L = s Aᵀ ∇_W L``, so the first SGD step moves the weight by ``δW = s A δB = -s² A Aᵀ ∇_W L``
(``W`` as the ``[d_in, d_out]`` matrix): a ``Full`` step on that weight, multiplied on its input
side by the rank-``r`` matrix ``s² A Aᵀ``. The Adam step is ``δB = -sign(∇_B L)``, so
``δW = s A δB``.

That exact first step is a *random* rank-``r`` slice of the gradient, and a poor forecast of
where the fine-tune goes: ``A`` trains too once ``B`` moves, and the adapter's update turns toward
the gradient's top singular directions. ``lora="rank"`` (the default) forecasts that update: each
target weight moves by ``δW = -U_r S_r V_rᵀ``, the truncated SVD of ``-∇_W L``.

The activation at the hook of an evaluation token ``t`` moves by the Jacobian-vector product
``δx_t = (∂x_t/∂θ) δθ`` (forward-mode autodiff, exact; for ``steer`` exactly ``δx_t = δθ`` at
every token; a per-head hook such as ``hook_z``, ``[n_heads, d_head]``, is read as the dictionary
reads it in :mod:`workbench.activations`: heads flattened, or the SAE's one head). A dictionary
feature ``f`` reads its pre-activation, the SAE's own (``Dictionary.pre_activations``, SAE Lens's
``hook_sae_acts_pre``; ReLU, TopK and JumpReLU SAEs alike)

    a_f(x) = (norm(x) - b_dec · [apply_b_dec_to_input]) · W_enc[:, f] + b_enc[f],

so its predicted shift is, to first order,

    Δ_f = mean_t J_f(x_t) δx_t,    J = ∂a/∂x.

When ``norm`` is the identity (or a constant, which SAE Lens folds into ``W_enc``) ``J = W_enc``
at every token, and ``Δ_f = (mean_t δx_t) · W_enc[:, f]``; the forecast takes ``J`` from the
dictionary's own encode by forward-mode autodiff along the unit vectors (exactly ``W_enc`` for a
plain SAE). An SAE that normalises each input by its own statistics (SAE Lens's
``constant_norm_rescale``, ``x ↦ √d_in x / |x|``, and ``layer_norm``) has a ``J`` that depends
on ``x``: ``√d_in / |x| (I - x̂ x̂ᵀ) W_enc`` for the norm rescale. Then ``J(x_t) δx_t`` is taken
at every token, by autodiff through the dictionary's own encode at the activations the
forward-mode pass already has; ``W_enc`` alone would be off by the per-token factor
``√d_in / |x_t|`` (and the projection along ``x_t``).

The **alignment risk** of the fine-tune for a watched :class:`~workbench.features.FeatureSet`
(e.g. the features that separate a misaligned from an aligned persona, ``effect`` = Cohen's d,
positive when the feature is higher on the misaligned side) is

    risk = Σ_{f ∈ watched} d_f Δ_f = r · δθ,

with ``r = ∇_θ R`` the gradient of the watched read-out ``R(θ) = mean_t Σ_f d_f a_f(x_t)``
(for ``steer`` ``r = mean_t J(x_t)[:, watched] d``, ``W_enc[:, watched] d`` for an affine
encoder); positive when the fine-tune pushes the watched
features toward the misaligned side. Example ``i``'s **per-sample risk** is ``-∇L_i · r`` with
``L_i`` its own mean completion NLL: the risk of an SGD step on that example alone (for screening
data, as the paper's removal of the samples closest to toxic features). It is the linear (SGD)
decomposition for either ``step``: the SGD step is the token-weighted mean of the examples'
steps, so the token-weighted mean of the per-sample risks is ``risk`` for ``step="sgd"``; Adam's
sign step is no sum over examples, and for ``step="adam"`` that identity does not hold.

The **geometric path** says why: the *target features* are those the step raises most on the
fine-tune's own tokens (what the data asks for), and each watched feature is linked to the target
feature whose decoder direction it shares most (cosine), with its share of the risk.

**Cost** (``Forecast.extra["cost"]``), in batches of ``batch_size``, each distinct example once
(``dedupe``). **Memory** is bounded by the batch: the model runs in its own dtype (float32; half
precision on a float32 copy, the one copy of the model the forecast makes), with the trained
weights swapped in by :func:`torch.func.functional_call` (the model's own tensors, detached;
gradients only for what the fine-tune trains). Nothing of the size ``batch x pos x d_vocab`` is
cast to float64; float64 only holds per-batch sums (``[d_in]``, ``[d_sae]``, ``[n]``). Beyond
the model, a Full forecast holds two weight-sized buffers at a time (``∇L`` and ``r``, then
``∇L`` and ``δθ``).

* ``steer``: one forward and backward pass over the examples (a vector per example, so one
  backward pass gives every example's gradient); no pass over the evaluation prompts (with an
  SAE that normalises each input: one forward pass to the hook over the evaluation prompts, and
  one over the examples for the target features);
* ``lora`` and ``full``: over the evaluation prompts, one forward and backward pass to the hook
  (``r``) and one forward-mode pass to the hook (``δx_t``); over the examples, one forward and
  backward pass (``∇L``), one forward-mode pass along ``r`` (every per-sample risk at once, as the
  directional derivative of each example's loss) and one forward-mode pass to the hook along
  ``δθ`` (the target features). At a residual-stream hook (``resid_pre``/``resid_post``) the pass
  along ``r`` stops at the hook too: ``r`` moves only weights upstream of it, which every later
  layer reads through the hook's activation ``h`` alone, so ``∇L_i · r = Σ_t ∂L_i/∂h_t · δh_t``
  with ``∂L_i/∂h_t`` from the backward pass already run.

The fine-tune itself takes ``steps x batch_size`` forward and backward passes;
``benchmarks/alignment.py`` reports the ratio on the organism, ``benchmarks/real_scale.py`` the
time and memory on a GPT-2-small shape.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from workbench import execution
from workbench._device import cpu_threads
from workbench.activations._stream import dictionary_input
from workbench.data import encode_pairs, pairs_sha256, unique_pairs
from workbench.dictionaries import Dictionary, check_compatible, hook_trailing_shape
from workbench.features import FeatureSet
from workbench.finetunes import (
    _from_matrix,
    _init_lora,
    _lora_param_names,
    _LoraAdapter,
    _to_matrix,
)
from workbench.fingerprint import texts_sha256
from workbench.predictors import Prediction, predict
from workbench.specs import FinetuneSpec, Full, LoRA, SteeringVector, as_spec
from workbench.subjects import Subject

__all__ = ["ADAM_EPS", "BATCH_FLOATS", "Forecast", "RiskPath", "Step", "auto_batch_size",
           "forecast"]

#: the optimiser step forecast: plain gradient descent, or Adam's first step
Step = Literal["sgd", "adam"]
LoraStep = Literal["rank", "first"]
#: Adam's ``eps`` (torch's default, which :func:`workbench.finetune` uses)
ADAM_EPS = 1e-8


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
        method: the fine-tune method forecast (``"steer"``, ``"lora"`` or ``"full"``).
        spec: the description of the fine-tune spec forecast (``spec.describe()``); the audit
            refuses a fine-tune made with another spec.
        subject, dictionary: fingerprints of the base model and the dictionary.
        hook_name: the dictionary's hook.
        watch: the watched feature set's name.
        data_sha256, eval_sha256: fingerprints of the fine-tune data and the evaluation prompts.
        n_examples, n_unique: fine-tune examples, and the examples computed (the distinct ones,
            each once; all of them with ``dedupe=False``).
        predicted_shift: ``[d_sae]`` predicted pre-activation shift of every feature on the
            evaluation prompts, for the first optimiser step per unit learning rate.
        watched, weights: the watched features and their weights (Cohen's d).
        risk: ``Σ weights · predicted_shift[watched]``; > 0 means toward the positive side.
        sample_risk: ``[n_examples]`` per-example risk of an SGD step on that example alone
            (same units; for ``step="sgd"`` their mean, weighted by the examples' completion
            tokens, equals ``risk``).
        paths: the geometric paths, largest ``|contribution|`` first.
        grad_norm: norm of the fine-tune loss gradient w.r.t. what it trains (the vector, the
            LoRA ``B``s, every weight).
        seconds: wall-clock time of the forecast.
        extra: ``step`` (``"sgd"`` or ``"adam"``), ``seed`` (the fine-tune's, which draws a
            LoRA's ``A``), ``dedupe``, and ``cost``: ``examples`` (fine-tune examples computed),
            ``eval_prompts`` (evaluation prompts run), ``forward`` and ``backward`` (example
            passes, data and evaluation prompts together), ``jvp`` (forward passes that carried
            a forward-mode tangent), ``to_hook`` (forward passes that stopped at the hook) and
            ``batch_size``.
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
    predictions: dict[str, Prediction] = field(default_factory=dict)

    def riskiest(self, fraction: float) -> np.ndarray:
        """Indices of the ``fraction`` of examples with the highest per-sample risk.

        Ties are broken by example index, so the choice is deterministic.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1] (got {fraction})")
        if bool(torch.isnan(self.sample_risk).any()):
            raise ValueError(
                "this forecast has no per-sample risks (made with per_sample=False); forecast "
                "again with per_sample=True to screen the data"
            )
        return top_fraction(self.sample_risk, fraction)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (no per-feature or per-sample arrays)."""
        return {
            "method": self.method,
            "spec": self.spec,
            "step": self.extra.get("step", "sgd"),
            "seed": self.extra.get("seed"),
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
            "cost": dict(self.extra.get("cost", {})),
            "paths": [p.__dict__ for p in self.paths],
            **({"predictors": {k: p.summary() for k, p in self.predictions.items()}}
               if self.predictions else {}),
        }


# ------------------------------------------------------------------ inputs


def top_fraction(scores: torch.Tensor | np.ndarray, fraction: float) -> np.ndarray:
    """Sorted indices of the ``fraction`` of examples with the highest score (ties: by index,
    so the choice is deterministic)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1] (got {fraction})")
    sc = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(sc)), -sc))
    return np.sort(order[:round(fraction * len(sc))])


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


#: the activations a forecast batch aims at (floats; 2^28 float32 is 1 GiB)
BATCH_FLOATS = 2**28


def auto_batch_size(subject: Subject, length: int, floats: int = BATCH_FLOATS) -> int:
    """Sequences of ``length`` tokens per forecast batch: what keeps one backward pass's saved
    activations near ``floats`` (between 1 and 256).

    Per token, a TransformerLens block keeps about ``16 d_model + 3 d_mlp + 3 n_heads length``
    floats for its backward pass (residual stream, layer norms, q/k/v/z, attention scores and
    pattern, MLP pre- and post-activations), and the loss ``3 d_vocab`` (logits, log-softmax
    and its gradient); a rough count, within a small factor of ``benchmarks/real_scale.py``'s
    measured peaks.
    """
    cfg = subject.model.cfg
    d_model, n_heads = int(cfg.d_model), int(cfg.n_heads)
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d_model)
    per_token = (int(cfg.n_layers) * (16 * d_model + 3 * d_mlp + 3 * n_heads * length)
                 + 3 * int(cfg.d_vocab))
    return max(1, min(256, floats // (per_token * max(1, length))))


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


def _direction(grad: torch.Tensor, step: Step) -> torch.Tensor:
    """The first step per unit learning rate: ``-g`` (SGD) or ``-g / (|g| + ε)`` (Adam)."""
    return -grad if step == "sgd" else -grad / (grad.abs() + ADAM_EPS)


def _batches(ids: torch.Tensor, mask: torch.Tensor, batch_size: int) -> list[tuple[slice, int]]:
    """Row slices of ``batch_size`` and each batch's length (up to its last masked position)."""
    out = []
    for s in range(0, len(ids), batch_size):
        cols = mask[s : s + batch_size].any(0).nonzero()
        out.append((slice(s, s + batch_size), int(cols.max()) + 1 if len(cols) else 1))
    return out


@dataclass
class _Cost:
    """Example passes used (see ``Forecast.extra["cost"]``)."""

    examples: int = 0
    eval_prompts: int = 0
    forward: int = 0
    backward: int = 0
    jvp: int = 0
    to_hook: int = 0

    def add(
        self, n: int, *, backward: bool = False, jvp: bool = False, to_hook: bool = False
    ) -> None:
        self.forward += n
        self.backward += n if backward else 0
        self.jvp += n if jvp else 0
        self.to_hook += n if to_hook else 0


# ------------------------------------------------------------------ the dictionary's read-in


@dataclass(frozen=True)
class _Encoder:
    """The dictionary's pre-activations ``a(x)`` of one token's hook activation ``x`` (flattened
    to ``width``; per-head hooks as :mod:`workbench.activations` hands them to the dictionary),
    their derivative, and the watched read-out ``R(x) = Σ_f d_f a_f(x)``.

    ``jacobian`` (``[width, d_sae]``, float64, CPU) is ``∂a/∂x`` when ``a`` is affine, the same at
    every token: ``W_enc`` for a plain SAE at a residual hook (exactly: forward-mode autodiff
    through the dictionary's own encode along the unit vectors). ``None`` when the SAE rescales
    each input by its own norm (SAE Lens's ``constant_norm_rescale``, ``layer_norm``): then the
    derivative is taken at every token, by autodiff through the dictionary's own encode.
    """

    dictionary: Dictionary
    shape: tuple[int, ...]  # one token's hook activation, e.g. (d_model,) or (n_heads, d_head)
    jacobian: torch.Tensor | None
    watched: torch.Tensor  # [n_watch] feature indices
    weights: torch.Tensor  # [n_watch] float64 effect sizes

    @property
    def readout(self) -> torch.Tensor:
        """``∂R/∂x`` ``[width]`` (float64, CPU): the same at every token (affine ``a`` only)."""
        assert self.jacobian is not None
        return self.jacobian[:, self.watched] @ self.weights

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``[N, d_sae]`` of tokens ``x`` ``[N, width]`` (differentiable)."""
        acts = dictionary_input(x.reshape(len(x), *self.shape), self.dictionary)
        return self.dictionary.pre_activations(acts)

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_t R(x_t)`` over tokens ``x`` ``[N, width]`` up to a constant (float64 scalar,
        differentiable in ``x``)."""
        if self.jacobian is not None:
            return (x.double() @ self.readout.to(x.device)).sum()
        return (self.pre(x)[:, self.watched].double() @ self.weights.to(x.device)).sum()

    def jvp(self, x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """``J(x_t) δx_t`` at every token ``[N, d_sae]`` (forward mode, exact)."""
        with torch.no_grad(), fwAD.dual_level():
            tangent = fwAD.unpack_dual(self.pre(fwAD.make_dual(x, dx.to(x)))).tangent
        if tangent is None:  # the pre-activations do not depend on x
            return torch.zeros(len(x), self.dictionary.d_sae, device=x.device)
        return tangent

    def grad_read(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_t ∂R/∂x (x_t)`` ``[width]`` over tokens ``x`` (float64)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.read(x), x)
        return g.double().sum(0)

    def accumulate(self, x: torch.Tensor, dx: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        """``Σ_t wt_t δx_t`` (affine ``a``: ``[width]``, times the Jacobian in :meth:`finish`) or
        ``Σ_t wt_t J(x_t) δx_t`` (``[d_sae]``) over a batch ``[b, pos, width]``, ``wt`` ``[b, pos]``
        (zero off the tokens counted)."""
        if self.jacobian is not None:
            return (dx.double() * wt[..., None]).sum((0, 1))
        k = wt != 0
        return (self.jvp(x[k], dx[k]).double() * wt[k][:, None]).sum(0)

    def finish(self, total: torch.Tensor) -> torch.Tensor:
        """The feature shift ``[d_sae]`` (CPU) of what :meth:`accumulate` summed."""
        total = total.cpu()
        return total @ self.jacobian if self.jacobian is not None else total

    @property
    def width(self) -> int:
        return math.prod(self.shape)


def _encoder(
    subject: Subject, dictionary: Dictionary, watched: torch.Tensor, weights: torch.Tensor
) -> _Encoder:
    shape = hook_trailing_shape(subject, dictionary.hook_name)
    enc = _Encoder(dictionary, shape, None, watched, weights)
    if dictionary.normalizes_per_input:
        return enc
    sae, width, block = dictionary.sae, enc.width, 1024
    rows = []
    for start in range(0, width, block):  # row i: ∂a/∂x_i along the unit vector (affine: anywhere)
        n = min(block, width - start)
        unit = torch.zeros(n, width, device=sae.device, dtype=sae.dtype)
        unit[:, start : start + n] = torch.eye(n, device=sae.device, dtype=sae.dtype)
        rows.append(enc.jvp(torch.zeros_like(unit), unit).detach().to(torch.float64).cpu())
    return dataclasses.replace(enc, jacobian=torch.cat(rows))


# ------------------------------------------------------------------ steer


def _steer_grads(
    model: torch.nn.Module,
    hook: str,
    d_model: int,
    ids: torch.Tensor,
    target: torch.Tensor,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's gradient w.r.t. a vector added at ``hook`` (``[n, d]``), and its tokens.

    One vector per example, broadcast over its positions, so one backward pass gives every
    example's own gradient (of its summed completion NLL). The weights enter detached: nothing
    upstream of the hook is recorded for the backward pass.
    """
    frozen = {k: p.detach() for k, p in model.named_parameters()}
    grads, counts = [], []
    for sl, n in _batches(ids, target, batch_size):
        b_ids, b_tgt = ids[sl, :n], target[sl, :n]
        v = torch.zeros(len(b_ids), 1, d_model, device=ids.device, requires_grad=True)
        # scoped: removes only this hook, never the caller's (a patch in force stays in force)
        with execution.hooks(model, [execution.add_vector(hook, v)]):
            nll, cnt = execution.per_example_nll(
                lambda x: torch.func.functional_call(model, frozen, (x,)), b_ids, b_tgt,
                dtype=_dtype(model),
            )
        (g,) = torch.autograd.grad(nll.sum(), v)
        grads.append(g[:, 0].double().cpu())
        counts.append(cnt.cpu())
    return torch.cat(grads), torch.cat(counts)


def _steer_per_token(
    model: torch.nn.Module,
    enc: _Encoder,
    delta: torch.Tensor,
    tokens: tuple[torch.Tensor, torch.Tensor],
    mult: torch.Tensor | None,
    batch_size: int,
    cost: _Cost,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A steering step ``δv`` read by a dictionary that normalises each input: the mean over the
    tokens (weighted by ``mult``) of ``J(x_t) δv`` ``[d_sae]`` and of ``∂R/∂x (x_t)``
    ``[width]``, from one forward pass to the hook (no gradient through the model)."""
    ids, keep = tokens
    shift = torch.zeros(enc.dictionary.d_sae, dtype=torch.float64)
    readout = torch.zeros(enc.width, dtype=torch.float64)
    den = 0.0
    for sl, n in _batches(ids, keep, batch_size):
        k = keep[sl, :n]
        x = execution.run_to_hook(model, ids[sl, :n], enc.dictionary.hook_name).flatten(2)[k]
        cost.add(len(ids[sl]), to_hook=True)
        wt = (torch.ones(len(x), dtype=torch.float64) if mult is None
              else mult[sl, None].expand(k.shape)[k.cpu()].double()).to(x.device)
        dx = delta.to(x).expand_as(x)
        shift += (enc.jvp(x, dx).double() * wt[:, None]).sum(0).cpu()
        if mult is None:
            readout += enc.grad_read(x).cpu()
        den += float(wt.sum())
    return shift / den, readout / den


# ------------------------------------------------------------------ lora and full


@dataclass(frozen=True)
class _Trained:
    """What a LoRA or Full fine-tune trains, ``θ`` at its start, and the weights ``θ`` gives.

    ``base`` holds every parameter of the model, detached; ``theta`` the trained tensors (Full:
    the trainable weights themselves; LoRA: each adapter's ``B`` = 0, keyed by its weight's
    name). The model is called with the weights swapped in (:func:`torch.func.functional_call`),
    as the fine-tune's LoRA is; the model itself is never changed.
    """

    model: torch.nn.Module
    base: dict[str, torch.Tensor]
    theta: dict[str, torch.Tensor]
    adapters: tuple[_LoraAdapter, ...] = ()

    def weights(self, theta: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.adapters:
            return {**self.base, **theta}
        out = dict(self.base)
        for ad in self.adapters:  # the fine-tune's own arithmetic: W + A @ B * scale
            w = self.base[ad.param]
            out[ad.param] = w + dataclasses.replace(ad, b=theta[ad.param]).delta(w)
        return out

    def nll(
        self, theta: Mapping[str, torch.Tensor], ids: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Each example's summed completion NLL ``[n]`` with ``theta``'s weights, in the
        model's dtype (the ``[batch, pos, d_vocab]`` log-softmax is never cast up)."""
        weights = self.weights(theta)

        def forward(x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = torch.func.functional_call(self.model, weights, (x,))
            return out

        return execution.per_example_nll(forward, ids, target, dtype=_dtype(self.model))[0]

    def nll_at(
        self, theta: Mapping[str, torch.Tensor], ids: torch.Tensor, target: torch.Tensor,
        hook: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`nll`, and the activation at ``hook`` it passed through (in the graph, so a
        backward gives the loss's gradient there too)."""
        seen: list[torch.Tensor] = []

        def keep(x: torch.Tensor, hook: Any) -> torch.Tensor:
            seen.append(x)
            return x

        with execution.hooks(self.model, [(hook, keep)]):
            nll = self.nll(theta, ids, target)
        return nll, seen[-1]

    def to_hook(
        self, theta: Mapping[str, torch.Tensor], ids: torch.Tensor, hook: str
    ) -> torch.Tensor:
        """Hook activations ``[batch, pos, width]`` (per-head hooks flattened)."""
        weights = {f"model.{k}": v for k, v in self.weights(theta).items()}
        x: torch.Tensor = torch.func.functional_call(_ToHook(self.model, hook), weights, (ids,))
        return x.flatten(2)


class _ToHook(torch.nn.Module):
    """The model run to a hook, as a module (so :func:`torch.func.functional_call` can swap in
    weights); holds the model, copies nothing."""

    def __init__(self, model: torch.nn.Module, hook: str) -> None:
        super().__init__()
        self.model = model
        self.hook = hook

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return execution.run_to_hook(self.model, ids, self.hook, grad=True)


def _trained(
    model: torch.nn.Module, subject: Subject, spec: LoRA | Full, seed: int, lora: LoraStep
) -> _Trained:
    base = {k: p.detach() for k, p in model.named_parameters()}
    if isinstance(spec, LoRA) and lora == "rank":  # the target weights themselves (rank-r step)
        names = _lora_param_names(subject, spec.targets, spec.layers)
        return _Trained(model, base, {k: base[k] for k in names})
    if isinstance(spec, Full):  # what finetune's Adam gets: the weights that require grad
        theta = {k: base[k] for k, p in model.named_parameters() if p.requires_grad}
        if not theta:
            raise ValueError(f"{subject.name} has no trainable weights (none requires grad)")
        return _Trained(model, base, theta)
    names = _lora_param_names(subject, spec.targets, spec.layers)
    adapters = tuple(
        dataclasses.replace(ad, a=ad.a.detach(), b=ad.b.detach())
        for ad in _init_lora(model, names, spec.rank, spec.scale_alpha, seed)
    )
    return _Trained(model, base, {ad.param: ad.b for ad in adapters}, adapters)


#: hooks every later layer reads the earlier weights through (the whole residual stream between
#: blocks; not resid_mid, which parallel-attention blocks bypass)
_BOTTLENECK = re.compile(r"^blocks\.\d+\.hook_resid_(pre|post)$")


def _jvp(
    tr: _Trained,
    direction: Mapping[str, torch.Tensor],
    fn: Callable[..., torch.Tensor],
    *args: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``fn(θ, *args)`` and its forward-mode derivative along ``direction`` (exact, one pass;
    ``None`` where ``fn`` does not depend on it)."""
    with torch.no_grad(), fwAD.dual_level():
        theta = {
            k: fwAD.make_dual(t, direction[k]) if k in direction else t
            for k, t in tr.theta.items()
        }
        primal, tangent = fwAD.unpack_dual(fn(theta, *args))
    return primal, tangent


def _grad(
    loss: torch.Tensor,
    theta: Mapping[str, torch.Tensor],
    into: dict[str, torch.Tensor],
    wrt: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Add ``∇_θ loss`` to ``into`` (weights the loss does not reach add nothing); with ``wrt``
    (a tensor of the graph), return ``∂ loss / ∂ wrt`` from the same backward."""
    if not loss.requires_grad:  # θ is downstream of it (a LoRA after the hook)
        return None
    inputs = list(theta.values()) + ([wrt] if wrt is not None else [])
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    for k, g in zip(theta, grads, strict=False):
        if g is not None:
            if k in into:
                into[k].add_(g)  # in place: one weight-sized buffer per weight, never two
            else:
                into[k] = g
    return grads[-1] if wrt is not None else None


def _weights_step(
    model: torch.nn.Module,
    subject: Subject,
    spec: LoRA | Full,
    seed: int,
    step: Step,
    hook: str,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    evals: tuple[torch.Tensor, torch.Tensor],
    enc: _Encoder,
    batch_size: int,
    cost: _Cost,
    per_sample: bool = True,
    targets: bool = True,
    lora: LoraStep = "rank",
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """LoRA and Full: the shift, per-example risk, gradient norm and target shift."""
    tr = _trained(model, subject, spec, seed, lora)
    ids, target, mult = data
    eval_ids, eval_keep = evals
    dev = ids.device
    mult_d = mult.to(dev)

    # r = ∇θ R, R = mean over the evaluation tokens of the watched read-out
    n_eval = eval_keep.sum().double()
    theta = {k: t.detach().requires_grad_(True) for k, t in tr.theta.items()}
    r: dict[str, torch.Tensor] = {}
    for sl, n in _batches(eval_ids, eval_keep, batch_size) if per_sample else ():
        x = tr.to_hook(theta, eval_ids[sl, :n], hook)[eval_keep[sl, :n]]
        _grad(enc.read(x) / n_eval, theta, r)
        cost.add(len(eval_ids[sl]), backward=True, to_hook=True)

    # over the examples: ∇θ L, and ∇L_i · r as the derivative of each example's NLL along r.
    # r moves only the weights upstream of the hook; at a residual-stream hook every later
    # layer reads those weights through the hook's activation h alone, so the derivative is
    # Σ_t ∂L_i/∂h_t · dh_t: the backward's own gradient at h (the examples of a batch are
    # independent) dotted with h's derivative along r, a pass to the hook only. Elsewhere (a
    # per-head or MLP hook) the derivative runs through the whole model.
    n_tok = float((mult_d * target[:, 1:].sum(1)).sum())
    grad: dict[str, torch.Tensor] = {}
    along_r = []
    at_hook = bool(r) and _BOTTLENECK.match(hook) is not None
    for sl, n in _batches(ids, target, batch_size):
        b_ids, b_tgt = ids[sl, :n], target[sl, :n]
        if at_hook:
            nll, h = tr.nll_at(theta, b_ids, b_tgt, hook)
            dh_loss = _grad((mult_d[sl].to(nll) * nll).sum() / n_tok, theta, grad, wrt=h)
        else:
            nll = tr.nll(theta, b_ids, b_tgt)
            _grad((mult_d[sl].to(nll) * nll).sum() / n_tok, theta, grad)
        cost.add(len(b_ids), backward=True)
        if not per_sample:
            along_r.append(torch.full((len(b_ids),), float("nan"), device=dev))
            continue
        if at_hook:
            dh = _jvp(tr, r, tr.to_hook, b_ids, hook)[1]
            cost.add(len(b_ids), jvp=True, to_hook=True)
            dnll = None if dh is None or dh_loss is None else (
                (dh_loss.flatten(2).double() * dh.double()).sum((1, 2))
                * n_tok / mult_d[sl].double())
        else:
            dnll = _jvp(tr, r, tr.nll, b_ids, b_tgt)[1] if r else None
            cost.add(len(b_ids), jvp=True)
        along_r.append(dnll if dnll is not None else torch.zeros(len(b_ids), device=dev))
    r.clear()  # a weight-sized buffer per trained weight, no longer needed
    counts = target[:, 1:].sum(1).double()
    per_unique = -(torch.cat(along_r).double() / counts.clamp_min(1)).cpu()
    grad_norm = math.sqrt(sum(
        float(torch.linalg.vector_norm(g, dtype=torch.float64)) ** 2 for g in grad.values()
    ))
    if isinstance(spec, LoRA) and lora == "rank":  # the best rank-r part of each weight's step
        grad = {k: _rank(k, g, spec.rank) for k, g in grad.items()}
    delta = {k: _direction(g, step) for k, g in grad.items()}  # weights never reached: 0
    del grad

    # the shift on the evaluation tokens and on the fine-tune's own tokens (by multiplicity)
    def mean_shift(b_ids: torch.Tensor, keep: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        total: torch.Tensor | float = 0.0
        for sl, n in _batches(b_ids, keep, batch_size):
            x, dx = _jvp(tr, delta, tr.to_hook, b_ids[sl, :n], hook)
            cost.add(len(b_ids[sl]), jvp=True, to_hook=True)
            if dx is None:
                continue
            k = keep[sl, :n]
            wt = k.double() if w is None else k.double() * w[sl, None]
            total = total + enc.accumulate(x, dx, wt)
        den = keep.double().sum() if w is None else (keep.double() * w[:, None]).sum()
        if isinstance(total, float):  # nothing upstream of the hook is trained
            return torch.zeros(enc.dictionary.d_sae, dtype=torch.float64)
        return enc.finish(total / den)

    shift = mean_shift(eval_ids, eval_keep, None)
    target_shift = (mean_shift(ids, target, mult_d) if targets
                    else torch.zeros(enc.dictionary.d_sae, dtype=torch.float64))
    return shift, per_unique, grad_norm, target_shift


def _rank(param: str, grad: torch.Tensor, r: int) -> torch.Tensor:
    """The best rank-``r`` approximation (truncated SVD) of a weight's gradient, in the matrix
    the weight acts as (per-head weights flattened as a LoRA adapter sees them)."""
    mat = _to_matrix(param, grad).double()
    u, sv, vh = torch.linalg.svd(mat, full_matrices=False)
    low = (u[:, :r] * sv[:r]) @ vh[:r]
    return _from_matrix(param, low.to(grad.dtype), grad.shape)


def _dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _compute_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, or a float32 copy of a half-precision one (the base is never touched)."""
    dtype = next(model.parameters()).dtype
    if dtype in (torch.float16, torch.bfloat16):
        copy: torch.nn.Module = execution.copy_model(model, dtype=torch.float32)
        return copy
    return model


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
    batch_size: int | None = None,
    dedupe: bool = True,
    step: Step = "sgd",
    seed: int = 0,
    per_sample: bool = True,
    predictors: Sequence[str] = (),
    lora: LoraStep = "rank",
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
            the dictionary's hook), :class:`~workbench.specs.LoRA` or
            :class:`~workbench.specs.Full`; ``"steer"``, ``"lora"`` and ``"full"`` are
            shorthands. The forecast records it, and :func:`workbench.audit` refuses a
            fine-tune made with another.
        n_watch: use the ``n_watch`` strongest watched features (``None``: all of them).
        n_targets: target features reported in the geometric paths.
        batch_size: examples (and evaluation prompts) per pass; memory, not results (up to
            float rounding). Peak memory grows with ``batch_size`` x the longest sequence.
            ``None`` (default): as many sequences as keep a backward pass's activations near
            :data:`BATCH_FLOATS` floats (:func:`auto_batch_size`; at most 256: every batch of
            the organism, about 9 sequences of 64 tokens on a GPT-2-small shape). Recorded in
            ``extra["cost"]["batch_size"]``.
        dedupe: compute each distinct example once (exact: equal examples have equal
            gradients); ``False`` computes every example, for timing comparisons.
        step: the first optimiser step forecast: ``"sgd"`` (``-∇L``) or ``"adam"`` (Adam's
            first step, ``-∇L / (|∇L| + ε)``, the sign of the gradient, which is what
            :func:`workbench.finetune` takes first); per unit learning rate. The per-sample
            risk is the linear (SGD) per-example decomposition for both.
        seed: the fine-tune's seed, which draws a LoRA's ``A`` (pass the ``seed`` given to
            :func:`workbench.finetune`); recorded in ``extra["seed"]``.
        per_sample: compute every example's own risk (``sample_risk``, for screening). For
            LoRA and Full that is one forward-mode pass over the data, about as much as the
            rest of the forecast; ``False`` skips it (``sample_risk`` is then NaN and
            :meth:`Forecast.riskiest` refuses). Steer gets it for free either way.
            ``n_targets=0`` likewise skips the geometric paths (one forward-mode pass over the
            data to the hook for LoRA and Full).
        lora: how a LoRA's step is forecast. ``"rank"`` (default): each target weight moves by
            the best rank-``r`` approximation (truncated SVD) of its own gradient, the update a
            rank-``r`` adapter converges to once it has found its directions (its ``A`` and
            ``B`` train together); the per-sample risks are those of a step on the target
            weights. ``"first"``: the exact first step of the fine-tune's fresh adapter (``A``
            drawn with ``seed``, ``B`` = 0, so ``δW = -s² A Aᵀ ∇_W L``: a random rank-``r``
            slice of the gradient). On the organism's family ``"first"`` ranked LoRA
            fine-tunes' EM with Spearman -0.12 and -0.29 (seeds 0, 1), ``"rank"`` 0.18 and 0.62.
        predictors: also score the data with these published predictors and null baselines
            (:data:`workbench.predictors.PREDICTORS`: ``"chen"``, ``"minegishi"``, ``"nll"``,
            ``"projection"``, ``"grad_norm"``, ``"constant"``), side by side in
            ``Forecast.predictions`` (see :func:`workbench.predictors.predict`; not timed in
            ``seconds``). ``benchmarks/forecast.py`` scores them all across fine-tunes.

    Returns:
        A :class:`Forecast`. See the module docstring for the derivation.

    Raises:
        ValueError: empty data or data with no completion tokens, a FeatureSet from another
            dictionary, an unknown spec or step, a LoRA target the model lacks, a steering
            vector away from the dictionary's hook, no evaluation prompts, a non-positive
            ``batch_size``.
    """
    spec = as_spec(spec)
    if step not in get_args(Step):
        raise ValueError(f"unknown step {step!r}; use one of {get_args(Step)}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: use at least one example per batch")
    check_compatible(subject, dictionary)
    spec.check(subject.n_layers, subject.name)
    if isinstance(spec, SteeringVector) and not execution.RESID_HOOK.match(dictionary.hook_name):
        raise ValueError(
            f"a SteeringVector adds one vector to the residual stream ({spec.hook_name!r}), but "
            f"this dictionary reads {dictionary.hook_name!r}, not the residual stream (a per-head "
            "or MLP activation), where no steering vector is added: forecast LoRA(...) or Full() "
            f"with this dictionary, or the SteeringVector with a dictionary at {spec.hook_name!r}"
        )
    if isinstance(spec, SteeringVector) and spec.hook_name != dictionary.hook_name:
        raise ValueError(
            f"a SteeringVector forecast predicts the vector at the dictionary's hook "
            f"({dictionary.hook_name!r}), but this spec adds it at {spec.hook_name!r}; use a "
            "dictionary at that hook, the SteeringVector(layer) of the dictionary, or Full()"
        )
    w = _check_watch(watch, dictionary, n_watch)
    if not finetune_data:
        raise ValueError("no fine-tune examples: pass at least one (prompt, completion) pair")
    t0 = time.perf_counter()
    unique, inverse = unique_pairs(finetune_data)
    ids, target = encode_pairs(subject, unique)  # each distinct text tokenized once
    if not dedupe:  # every example computed: row i is example i
        rows = torch.from_numpy(inverse).to(ids.device)
        ids, target = ids[rows], target[rows]
        inverse = np.arange(len(inverse))
    if not bool(target[:, 1:].any()):
        raise ValueError(
            "the fine-tune data has no completion tokens: every (prompt, completion) pair needs a "
            "non-empty completion"
        )
    eval_ids, eval_keep = _token_level(subject, eval_prompts)
    if batch_size is None:
        batch_size = auto_batch_size(subject, max(ids.shape[1], eval_ids.shape[1]))
    hook = dictionary.hook_name
    idx = torch.tensor(w.indices)
    weights = torch.tensor(w.effect, dtype=torch.float64)
    mult = torch.from_numpy(np.bincount(inverse, minlength=len(ids))).double()
    cost = _Cost(examples=len(ids))

    with cpu_threads(1, subject.device):
        enc = _encoder(subject, dictionary, idx, weights)
        model = _compute_model(subject.model)
        if isinstance(spec, SteeringVector):
            g_i, c_i = _steer_grads(model, hook, subject.d_model, ids, target, batch_size)
            cost.add(len(ids), backward=True)
            grad = (mult[:, None] * g_i).sum(0) / (mult * c_i).sum()  # ∇_v of the mean NLL
            delta = _direction(grad, step)
            if enc.jacobian is not None:  # the same δx, and the same derivative, at every token
                shift, readout = delta @ enc.jacobian, enc.readout
                target_shift = shift
            else:
                cost.eval_prompts = len(eval_ids)
                shift, readout = _steer_per_token(model, enc, delta, (eval_ids, eval_keep),
                                                  None, batch_size, cost)
                target_shift = (_steer_per_token(model, enc, delta, (ids, target), mult,
                                                 batch_size, cost)[0] if n_targets > 0
                                else shift)
            per_unique = -(g_i @ readout) / c_i.clamp_min(1)  # risk of a step on that example alone
            grad_norm = float(grad.norm())
        else:
            cost.eval_prompts = len(eval_ids)
            shift, per_unique, grad_norm, target_shift = _weights_step(
                model, subject, spec, seed, step, hook, (ids, target, mult),
                (eval_ids, eval_keep), enc, batch_size, cost,
                per_sample=per_sample, targets=n_targets > 0, lora=lora,
            )

    risk = float(shift[idx] @ weights)
    paths = _paths(dictionary, w, shift, target_shift, n_targets) if n_targets > 0 else ()
    sample_risk = per_unique[torch.from_numpy(inverse)].float()
    seconds = time.perf_counter() - t0
    predictions = (predict(subject, dictionary, finetune_data, watch=w, names=predictors,
                           seed=seed, batch_size=min(batch_size, 64)) if predictors else {})
    return Forecast(
        method=spec.method,
        spec=spec.describe(),
        subject=subject.fingerprint,
        dictionary=dictionary.fingerprint,
        hook_name=hook,
        watch=w.name,
        data_sha256=pairs_sha256(finetune_data),
        eval_sha256=texts_sha256(eval_prompts),
        n_examples=len(finetune_data),
        n_unique=len(ids),
        predicted_shift=shift.float(),
        watched=tuple(int(i) for i in idx),
        weights=tuple(float(x) for x in weights),
        risk=risk,
        sample_risk=sample_risk,
        paths=paths,
        grad_norm=grad_norm,
        seconds=seconds,
        predictions=predictions,
        extra={
            "step": step,
            "seed": seed,
            "dedupe": dedupe,
            "per_sample": per_sample,
            "cost": {**dataclasses.asdict(cost), "batch_size": batch_size},
        },
    )


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
