"""Fine-tunes that return a new Subject (the base model is never modified).

A typed spec (:mod:`workbench.specs`) says what is trained; all three are trained with Adam on a
deep copy of the base model:

:class:`~workbench.specs.SteeringVector` ``(layer)`` learns a single vector added to the residual
stream after block ``layer`` at every position (the restricted fine-tune of the toy EM experiment:
one direction, so whatever it learns to do for the fine-tune's narrow task it does everywhere).
After training the vector is folded exactly into that block's MLP output bias (``resid_post =
resid_mid + mlp_out`` and ``mlp_out`` ends with ``+ b_out``), so the tuned subject is a plain
TransformerLens model.

:class:`~workbench.specs.LoRA` ``(rank, alpha, targets, layers)`` trains a rank-``r`` LoRA adapter
(Hu et al. 2021) on each chosen weight matrix of each chosen block; by default one rank-1 adapter on
the MLP output matrix ``blocks[layer].mlp.W_out`` (Turner, Soligo et al. 2025, arXiv 2506.11613,
found emergent misalignment from a single rank-1 LoRA). In TransformerLens's ``[d_in, d_out]``
layout the adapted weight is ``W + A @ B * (alpha / rank)`` with ``A`` ``[d_in, r]`` drawn from a
seeded Gaussian of std ``1 / sqrt(d_in)`` and ``B`` ``[r, d_out]`` zeros, so training starts from
the base model exactly. Only ``A`` and ``B`` are trained (the adapted weights are swapped in with
:func:`torch.func.functional_call`; no module of the copy is changed). After training the adapter is
merged into the weight, ``W <- W + A @ B * (alpha / rank)``, so the tuned subject is again a plain
TransformerLens model whose only changed tensors are the targeted weights, each changed by a matrix
of rank at most ``r``. Targets (``LORA_TARGETS``) are ``mlp.W_in``, ``mlp.W_out``, ``mlp.W_gate``
and the attention weights ``attn.W_Q``, ``attn.W_K``, ``attn.W_V``, ``attn.W_O``. TransformerLens
stores attention weights per head (``W_Q/W_K/W_V`` ``[n_heads, d_model, d_head]``, ``W_O``
``[n_heads, d_head, d_model]``); their adapter acts on the layer's whole flattened matrix,
``[d_model, n_heads * d_head]`` for ``W_Q/W_K/W_V`` (heads concatenated along the output) and
``[n_heads * d_head, d_model]`` for ``W_O``, which is what a LoRA on a Hugging Face ``q_proj`` or
``o_proj`` is. (Grouped-query models: the stored ``_W_K``/``_W_V`` of the key-value heads.)

:class:`~workbench.specs.Full` ``()`` trains every weight.

Training is deterministic for a given seed: batches are drawn with a seeded generator, the LoRA
``A`` with a seeded generator on the CPU, and the loss is the mean negative log-likelihood of the
completion tokens only (the prompt is context).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench import execution
from workbench._device import cpu_threads
from workbench.data import check_pairs, encode_pairs, pairs_sha256
from workbench.specs import LORA_TARGETS, FinetuneSpec, Full, LoRA, SteeringVector, as_spec
from workbench.subjects import Subject

__all__ = ["LORA_TARGETS", "FinetuneRecipe", "finetune"]


@dataclass(frozen=True)
class FinetuneRecipe:
    """Everything that determines a fine-tune (recorded on the tuned Subject).

    ``spec`` is the fine-tune spec's description (:meth:`~workbench.specs.LoRA.describe`);
    ``rank``, ``alpha``, ``targets`` and ``layers`` repeat the LoRA adapters' settings (``rank=0``
    and empty tuples for the other methods).
    """

    method: str = "steer"
    spec: dict[str, Any] = field(default_factory=dict)
    layer: int = 0
    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.0
    seed: int = 0
    data_sha256: str = ""
    n_examples: int = 0
    base_fingerprint: str = ""
    rank: int = 0
    alpha: float = 0.0
    targets: tuple[str, ...] = ()
    layers: tuple[int, ...] = ()


@dataclass
class _LoraAdapter:
    """One LoRA adapter: ``param`` (a parameter name) gets ``A @ B * scale`` in matrix layout."""

    param: str
    a: torch.Tensor  # [d_in, r]
    b: torch.Tensor  # [r, d_out]
    scale: float

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        """The adapter's update in ``weight``'s own (possibly per-head) layout and dtype."""
        return _from_matrix(self.param, self.a @ self.b * self.scale, weight.shape).to(weight.dtype)


def _matrix_shape(param: str, shape: torch.Size) -> tuple[int, int]:
    """``(d_in, d_out)`` of the matrix a (possibly per-head) weight acts as."""
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    h, x, y = (int(s) for s in shape)
    if param.endswith("W_O"):  # [n_heads, d_head, d_model] -> [n_heads * d_head, d_model]
        return h * x, y
    return x, h * y  # [n_heads, d_model, d_head] -> [d_model, n_heads * d_head]


def _from_matrix(param: str, mat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reshape a ``[d_in, d_out]`` matrix into the weight's layout (inverse of the flattening)."""
    if len(shape) == 2:
        return mat
    h, x, y = (int(s) for s in shape)
    if param.endswith("W_O"):
        return mat.reshape(h, x, y)
    return mat.reshape(x, h, y).permute(1, 0, 2)


def _to_matrix(param: str, weight: torch.Tensor) -> torch.Tensor:
    """The ``[d_in, d_out]`` matrix a (possibly per-head) weight acts as (inverse of
    :func:`_from_matrix`)."""
    if weight.dim() == 2:
        return weight
    h, x, y = weight.shape
    if param.endswith("W_O"):
        return weight.reshape(h * x, y)
    return weight.permute(1, 0, 2).reshape(x, h * y)


def _lora_param_names(subject: Subject, targets: Sequence[str], layers: Sequence[int]) -> list[str]:
    """Parameter names of the targeted weights, e.g. ``blocks.0.mlp.W_out``."""
    named = dict(subject.model.named_parameters())
    names = []
    for layer in layers:
        for target in targets:
            name = f"blocks.{layer}.{target}"
            if name not in named:  # grouped-query attention stores K/V as _W_K/_W_V
                head, _, last = name.rpartition(".")
                name = f"{head}._{last}"
            if name not in named or named[name].ndim not in (2, 3):
                have = sorted(k for k in named if k.startswith(f"blocks.{layer}."))
                raise ValueError(
                    f"{subject.name} has no weight matrix blocks.{layer}.{target} "
                    f"(its block {layer} has {have}); choose targets that this model has"
                )
            names.append(name)
    return names


def _init_lora(
    model: torch.nn.Module, params: Sequence[str], rank: int, alpha: float, seed: int
) -> list[_LoraAdapter]:
    """Adapters with ``A`` ~ N(0, 1/d_in) (seeded, drawn on the CPU) and ``B`` = 0."""
    named = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name in params:
        w = named[name]
        d_in, d_out = _matrix_shape(name, w.shape)
        a = torch.randn(d_in, rank, generator=gen) / math.sqrt(d_in)
        b = torch.zeros(rank, d_out)
        out.append(
            _LoraAdapter(
                name,
                a.to(w.device).requires_grad_(True),
                b.to(w.device).requires_grad_(True),
                alpha / rank,
            )
        )
    return out


class _LoraModel(torch.nn.Module):
    """The model with adapters applied un-merged (weights swapped in for each call)."""

    def __init__(self, model: torch.nn.Module, adapters: Sequence[_LoraAdapter]) -> None:
        super().__init__()
        self.model = model
        self.adapters = list(adapters)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        named = dict(self.model.named_parameters())
        weights = {ad.param: named[ad.param] + ad.delta(named[ad.param]) for ad in self.adapters}
        out: torch.Tensor = torch.func.functional_call(self.model, weights, (ids,))
        return out


def _merge_lora(model: torch.nn.Module, adapters: Sequence[_LoraAdapter]) -> None:
    """``W <- W + A @ B * scale`` in place (the same arithmetic as :class:`_LoraModel`)."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for ad in adapters:
            w = named[ad.param]
            w.copy_(w + ad.delta(w))


def finetune(
    subject: Subject,
    data: Sequence[tuple[str, str]],
    spec: FinetuneSpec | str = "steer",
    *,
    steps: int = 150,
    batch_size: int = 32,
    lr: float | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> Subject:
    """Fine-tune ``subject`` on (prompt, completion) pairs and return the tuned Subject.

    The base subject is never modified; the tuned one records a :class:`FinetuneRecipe` (as a
    dict, plus ``seconds``) on ``Subject.recipe``.

    Args:
        data: (prompt, completion) pairs of strings; the loss is on the completion tokens only.
        spec: what is trained: :class:`~workbench.specs.SteeringVector` ``(layer)`` (one
            residual vector, folded into that block's ``mlp.b_out``),
            :class:`~workbench.specs.LoRA` ``(rank, alpha, targets, layers)`` (adapters merged
            into the weights) or :class:`~workbench.specs.Full` ``()``; ``"steer"``, ``"lora"``
            and ``"full"`` are shorthands for their defaults.
        steps: optimiser steps, each on ``batch_size`` pairs drawn with replacement.
        lr: Adam learning rate (default 1e-2 for steering vectors and LoRA, 1e-3 for full).
        weight_decay: L2 penalty (Adam's ``weight_decay``) on the trained parameters.
        seed: fixes the batches and the LoRA ``A`` initialisation.
        progress: show a tqdm progress bar with the running loss.

    Raises:
        ValueError: an unknown spec or target, a block out of range, a non-positive
            ``steps``/``batch_size``/``lr``, malformed or empty data, or data whose
            completions have no tokens.
    """
    spec = as_spec(spec)
    if steps < 1:
        raise ValueError(f"steps={steps}: train for at least one step (steps >= 1)")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: use at least one example per batch")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr={lr}: the learning rate must be positive (or None for the default)")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay}: must be >= 0")
    spec.check(subject.n_layers, subject.name)
    lr = lr if lr is not None else spec.default_lr
    lora_params: list[str] = []
    if isinstance(spec, LoRA):
        lora_params = _lora_param_names(subject, spec.targets, spec.layers)
    if isinstance(spec, SteeringVector):
        execution.check_foldable(subject.model, spec.hook_name, "a steering-vector fine-tune")
    pairs = check_pairs(data)
    ids, target = encode_pairs(subject, pairs)
    if not bool(target.any()):
        raise ValueError(
            "the fine-tune data has no completion tokens: every (prompt, completion) pair needs "
            "a non-empty completion"
        )
    recipe = FinetuneRecipe(
        method=spec.method,
        spec=spec.describe(),
        layer=spec.layer if isinstance(spec, SteeringVector) else 0,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        data_sha256=pairs_sha256(pairs),
        n_examples=len(pairs),
        base_fingerprint=subject.fingerprint,
        rank=spec.rank if isinstance(spec, LoRA) else 0,
        alpha=spec.scale_alpha if isinstance(spec, LoRA) else 0.0,
        targets=spec.targets if isinstance(spec, LoRA) else (),
        layers=spec.layers if isinstance(spec, LoRA) else (),
    )
    model = execution.copy_model(subject.model)
    model.eval()  # no dropout in these models; eval keeps any norm statistics fixed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    forward: execution.Forward = model
    adapters: list[_LoraAdapter] = []
    hooks: list[execution.Hook] = []
    if not isinstance(spec, Full):
        for p in model.parameters():
            p.requires_grad_(False)
    if isinstance(spec, SteeringVector):
        vec = torch.zeros(subject.d_model, device=subject.device, requires_grad=True)
        params: list[torch.Tensor] = [vec]
        hooks = [execution.add_vector(spec.hook_name, vec)]
    elif isinstance(spec, LoRA):
        adapters = _init_lora(model, lora_params, spec.rank, spec.scale_alpha, seed)
        params = [t for ad in adapters for t in (ad.a, ad.b)]
        forward = _LoraModel(model, adapters)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    t0 = time.perf_counter()
    with cpu_threads(1, subject.device), execution.hooks(model, hooks):
        bar = tqdm(range(steps), desc=f"finetune {spec.method}", disable=not progress)
        for _ in bar:
            idx = torch.from_numpy(rng.integers(0, len(ids), size=batch_size))
            loss = execution.completion_nll(forward, ids[idx], target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if isinstance(spec, SteeringVector):
        execution.fold_into_bias(model, spec.hook_name, vec.detach())
    elif isinstance(spec, LoRA):
        _merge_lora(model, adapters)
    for n, p in model.named_parameters():
        p.requires_grad_(trainable[n])
    info = {**asdict(recipe), "seconds": time.perf_counter() - t0}
    return subject.derived(model, f"{subject.name}+{spec.method}", info)


