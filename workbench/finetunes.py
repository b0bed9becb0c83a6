"""Fine-tunes that return a new Subject (the base model is never modified).

``method="steer"`` learns a single vector added to the residual stream after block ``layer`` at
every position (the restricted fine-tune of the toy EM experiment: one direction, so whatever it
learns to do for the fine-tune's narrow task it does everywhere). After training the vector is
folded exactly into that block's MLP output bias (``resid_post = resid_mid + mlp_out`` and
``mlp_out`` ends with ``+ b_out``), so the tuned subject is a plain TransformerLens model.

``method="full"`` trains every weight.

Training is deterministic for a given seed: batches are drawn with a seeded generator and the loss
is the mean negative log-likelihood of the completion tokens only (the prompt is context).
"""

from __future__ import annotations

import copy
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

METHODS = ("steer", "full")


@dataclass(frozen=True)
class FinetuneRecipe:
    """Everything that determines a fine-tune (recorded on the tuned Subject)."""

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


def completion_nll(
    model: torch.nn.Module, ids: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
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
    progress: bool = True,
) -> Subject:
    """Fine-tune ``subject`` on (prompt, completion) pairs and return the tuned Subject.

    Args:
        method: ``"steer"`` (one learned residual vector after block ``layer``) or ``"full"``.
        lr: learning rate (default 1e-2 for ``steer``, 1e-3 for ``full``).
        weight_decay: L2 penalty (Adam's ``weight_decay``) on the trained parameters.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fine-tune method {method!r}; choose from {METHODS}")
    n_layers = subject.model.cfg.n_layers
    if method == "steer" and not 0 <= layer < n_layers:
        raise ValueError(f"layer={layer} out of range: {subject.name} has {n_layers} blocks")
    lr = lr if lr is not None else (1e-2 if method == "steer" else 1e-3)
    recipe = FinetuneRecipe(
        method=method,
        layer=layer,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        data_sha256=texts_sha256(f"{p}\x00{c}" for p, c in data),
        n_examples=len(data),
        base_fingerprint=subject.fingerprint,
    )
    ids, target = encode_pairs(subject, data)
    model = copy.deepcopy(subject.model)
    model.eval()  # no dropout in these models; eval keeps any norm statistics fixed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if method == "steer":
        vec = torch.zeros(model.cfg.d_model, device=subject.device, requires_grad=True)
        for p in model.parameters():
            p.requires_grad_(False)
        params: list[torch.Tensor] = [vec]
        hook_name = f"blocks.{layer}.hook_resid_post"

        def add_vec(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
            return tensor + vec

        model.add_hook(hook_name, add_vec)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    t0 = time.perf_counter()
    with cpu_threads(1, subject.device):
        bar = tqdm(range(steps), desc=f"finetune {method}", disable=not progress)
        for _ in bar:
            idx = torch.from_numpy(rng.integers(0, len(ids), size=batch_size))
            loss = completion_nll(model, ids[idx], target[idx])
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
        for p in model.parameters():
            p.requires_grad_(True)
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
