"""Fine-tunes that return a new Subject (the base model is never modified).

Three methods, all trained with Adam on a deep copy of the base model:

``method="steer"`` learns a single vector added to the residual stream after block ``layer`` at
every position (the restricted fine-tune of the toy EM experiment: one direction, so whatever it
learns to do for the fine-tune's narrow task it does everywhere). After training the vector is
folded exactly into that block's MLP output bias (``resid_post = resid_mid + mlp_out`` and
``mlp_out`` ends with ``+ b_out``), so the tuned subject is a plain TransformerLens model.

``method="lora"`` trains a rank-``r`` LoRA adapter (Hu et al. 2021) on each chosen weight matrix
of each chosen block; by default one rank-1 adapter on the MLP output matrix
``blocks[layer].mlp.W_out`` (Turner, Soligo et al. 2025, arXiv 2506.11613, found emergent
misalignment from a single rank-1 LoRA). In TransformerLens's ``[d_in, d_out]`` layout the
adapted weight is ``W + A @ B * (alpha / rank)`` with ``A`` ``[d_in, r]`` drawn from a seeded
Gaussian of std ``1 / sqrt(d_in)`` and ``B`` ``[r, d_out]`` zeros, so training starts from the
base model exactly. Only ``A`` and ``B`` are trained (the adapted weights are swapped in with
:func:`torch.func.functional_call`; no module of the copy is changed). After training the adapter
is merged into the weight, ``W <- W + A @ B * (alpha / rank)``, so the tuned subject is again a
plain TransformerLens model whose only changed tensors are the targeted weights, each changed by a
matrix of rank at most ``r``. Targets (``LORA_TARGETS``) are ``mlp.W_in``, ``mlp.W_out``,
``mlp.W_gate`` and the attention weights ``attn.W_Q``, ``attn.W_K``, ``attn.W_V``, ``attn.W_O``.
TransformerLens stores attention weights per head (``W_Q/W_K/W_V`` ``[n_heads, d_model, d_head]``,
``W_O`` ``[n_heads, d_head, d_model]``); their adapter acts on the layer's whole flattened matrix,
``[d_model, n_heads * d_head]`` for ``W_Q/W_K/W_V`` (heads concatenated along the output) and
``[n_heads * d_head, d_model]`` for ``W_O``, which is what a LoRA on a Hugging Face ``q_proj`` or
``o_proj`` is. (Grouped-query models: the stored ``_W_K``/``_W_V`` of the key-value heads.)

``method="full"`` trains every weight.

Training is deterministic for a given seed: batches are drawn with a seeded generator, the LoRA
``A`` with a seeded generator on the CPU, and the loss is the mean negative log-likelihood of the
completion tokens only (the prompt is context).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformer_lens.hook_points import HookPoint

from workbench._device import cpu_threads
from workbench.fingerprint import texts_sha256
from workbench.subjects import Subject, make_subject

METHODS = ("steer", "lora", "full")
LORA_TARGETS = (
    "mlp.W_in",
    "mlp.W_out",
    "mlp.W_gate",
    "attn.W_Q",
    "attn.W_K",
    "attn.W_V",
    "attn.W_O",
)
DEFAULT_LR = {"steer": 1e-2, "lora": 1e-2, "full": 1e-3}


@dataclass(frozen=True)
class FinetuneRecipe:
    """Everything that determines a fine-tune (recorded on the tuned Subject).

    ``rank``, ``alpha``, ``targets`` and ``layers`` describe the LoRA adapters (``rank=0`` and
    empty tuples for the other methods).
    """

    method: str = "steer"
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


def _check_pairs(data: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(data, str | bytes):
        raise ValueError(
            "fine-tune data must be a sequence of (prompt, completion) pairs of strings, "
            "not a single string"
        )
    pairs = []
    for i, item in enumerate(data):
        if (
            not isinstance(item, tuple | list)
            or len(item) != 2
            or not all(isinstance(s, str) for s in item)
        ):
            raise ValueError(
                f"fine-tune data item {i} is {item!r:.80}: every item must be a "
                f"(prompt, completion) pair of two strings"
            )
        pairs.append((item[0], item[1]))
    return pairs


def encode_pairs(
    subject: Subject, pairs: Sequence[tuple[str, str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``prompt + " " + completion`` and a mask that is true on completion tokens."""
    if not pairs:
        raise ValueError("no fine-tune examples: pass at least one (prompt, completion) pair")
    plen = subject.encode([p for p, _ in pairs])[1].sum(1)
    full, full_mask = subject.encode([f"{p} {c}" for p, c in pairs])
    pos = torch.arange(full.shape[1], device=full.device)[None]
    target = full_mask & (pos >= plen[:, None])
    return full, target


def completion_nll(model: torch.nn.Module, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the tokens where ``target`` is true."""
    logits = model(ids)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
    m = target[:, 1:].float()
    return (nll * m).sum() / m.sum().clamp_min(1.0)


def finetune(
    subject: Subject,
    data: Sequence[tuple[str, str]],
    method: str = "steer",
    *,
    layer: int = 0,
    steps: int = 150,
    batch_size: int = 32,
    lr: float | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    rank: int = 1,
    alpha: float | None = None,
    targets: Sequence[str] = ("mlp.W_out",),
    layers: Sequence[int] | None = None,
    progress: bool = True,
) -> Subject:
    """Fine-tune ``subject`` on (prompt, completion) pairs and return the tuned Subject.

    The base subject is never modified; the tuned one records a :class:`FinetuneRecipe` (as a
    dict, plus ``seconds``) on ``Subject.recipe``.

    Args:
        data: (prompt, completion) pairs of strings; the loss is on the completion tokens only.
        method: ``"steer"`` (one learned residual vector after block ``layer``, folded into that
            block's ``mlp.b_out``), ``"lora"`` (low-rank adapters merged into the weights) or
            ``"full"`` (every weight).
        layer: the block of ``steer``, and of ``lora`` when ``layers`` is not given.
        steps: optimiser steps, each on ``batch_size`` pairs drawn with replacement.
        lr: Adam learning rate (default 1e-2 for ``steer`` and ``lora``, 1e-3 for ``full``).
        weight_decay: L2 penalty (Adam's ``weight_decay``) on the trained parameters.
        seed: fixes the batches and the LoRA ``A`` initialisation.
        rank: LoRA rank ``r`` (``lora`` only).
        alpha: LoRA scale numerator, the update is ``A @ B * alpha / rank`` (default ``rank``,
            a scale of 1; ``lora`` only).
        targets: which weight of each chosen block gets an adapter, from ``LORA_TARGETS``
            (``lora`` only).
        layers: the blocks that get adapters (default ``(layer,)``; ``lora`` only).
        progress: show a tqdm progress bar with the running loss.

    Raises:
        ValueError: an unknown method or target, a block out of range, a non-positive
            ``steps``/``batch_size``/``lr``/``rank``, malformed or empty data, or data whose
            completions have no tokens.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fine-tune method {method!r}; choose from {METHODS}")
    n_layers = subject.model.cfg.n_layers
    if steps < 1:
        raise ValueError(f"steps={steps}: train for at least one step (steps >= 1)")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: use at least one example per batch")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr={lr}: the learning rate must be positive (or None for the default)")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay}: must be >= 0")
    lr = lr if lr is not None else DEFAULT_LR[method]
    lora_params: list[str] = []
    lora_layers: tuple[int, ...] = ()
    lora_targets: tuple[str, ...] = ()
    if method == "lora":
        if rank < 1:
            raise ValueError(f"rank={rank}: a LoRA adapter needs rank >= 1")
        alpha = float(rank) if alpha is None else float(alpha)
        if isinstance(targets, str):
            targets = (targets,)
        lora_targets = tuple(dict.fromkeys(targets))
        if not lora_targets:
            raise ValueError(f"targets is empty: name at least one of {LORA_TARGETS}")
        bad = [t for t in lora_targets if t not in LORA_TARGETS]
        if bad:
            raise ValueError(f"unknown LoRA target(s) {bad}; choose from {LORA_TARGETS}")
        lora_layers = tuple(sorted(set((layer,) if layers is None else layers)))
        if not lora_layers:
            raise ValueError("layers is empty: name at least one block (or None for (layer,))")
        for ly in lora_layers:
            if not 0 <= ly < n_layers:
                raise ValueError(
                    f"layer={ly} out of range: {subject.name} has {n_layers} blocks "
                    f"(0..{n_layers - 1})"
                )
        lora_params = _lora_param_names(subject, lora_targets, lora_layers)
    elif method == "steer" and not 0 <= layer < n_layers:
        raise ValueError(
            f"layer={layer} out of range: {subject.name} has {n_layers} blocks (0..{n_layers - 1})"
        )
    pairs = _check_pairs(data)
    ids, target = encode_pairs(subject, pairs)
    if not bool(target.any()):
        raise ValueError(
            "the fine-tune data has no completion tokens: every (prompt, completion) pair needs "
            "a non-empty completion"
        )
    recipe = FinetuneRecipe(
        method=method,
        layer=layer,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        data_sha256=texts_sha256(f"{p}\x00{c}" for p, c in pairs),
        n_examples=len(pairs),
        base_fingerprint=subject.fingerprint,
        rank=rank if method == "lora" else 0,
        alpha=float(alpha) if method == "lora" and alpha is not None else 0.0,
        targets=lora_targets,
        layers=lora_layers,
    )
    model = copy.deepcopy(subject.model)
    model.eval()  # no dropout in these models; eval keeps any norm statistics fixed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    forward: torch.nn.Module = model
    adapters: list[_LoraAdapter] = []
    if method in ("steer", "lora"):
        for p in model.parameters():
            p.requires_grad_(False)
    if method == "steer":
        vec = torch.zeros(model.cfg.d_model, device=subject.device, requires_grad=True)
        params: list[torch.Tensor] = [vec]
        hook_name = f"blocks.{layer}.hook_resid_post"

        def add_vec(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
            return tensor + vec

        model.add_hook(hook_name, add_vec)
    elif method == "lora":
        assert alpha is not None
        adapters = _init_lora(model, lora_params, rank, alpha, seed)
        params = [t for ad in adapters for t in (ad.a, ad.b)]
        forward = _LoraModel(model, adapters)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    t0 = time.perf_counter()
    with cpu_threads(1, subject.device):
        bar = tqdm(range(steps), desc=f"finetune {method}", disable=not progress)
        for _ in bar:
            idx = torch.from_numpy(rng.integers(0, len(ids), size=batch_size))
            loss = completion_nll(forward, ids[idx], target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.reset_hooks()
    if method == "steer":
        b_out = model.blocks[layer].mlp.b_out
        assert isinstance(b_out, torch.nn.Parameter)
        with torch.no_grad():
            b_out.add_(vec.detach())
    elif method == "lora":
        _merge_lora(model, adapters)
    for n, p in model.named_parameters():
        p.requires_grad_(trainable[n])
    tuned = make_subject(
        model,
        subject.tokenizer,
        f"{subject.name}+{method}",
        subject.source,
        None,
    )
    info = {**asdict(recipe), "seconds": time.perf_counter() - t0}
    return _with_recipe(tuned, info)


def _with_recipe(subject: Subject, recipe: dict[str, Any]) -> Subject:
    from dataclasses import replace

    return replace(subject, recipe=recipe)
