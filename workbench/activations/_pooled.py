"""Pooled activations: one vector per prompt, of the raw hook or of a dictionary's features."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from workbench._device import cpu_threads
from workbench.activations._stream import (
    Batch,
    Pool,
    check_hook,
    check_prompts,
    dictionary_input,
    stream,
    threads,
)
from workbench.dictionaries import Dictionary, check_compatible
from workbench.subjects import Subject

# ------------------------------------------------------------------ pooled activations


def _pool(x: torch.Tensor, keep: torch.Tensor, pool: Pool) -> torch.Tensor:
    """Pool ``x`` ``[B, T, d]`` over the kept tokens of each row: ``[B, d]`` (float64 sums)."""
    if pool == "mean":
        w = keep.to(torch.float64)
        return torch.einsum("bt,btd->bd", w, x.double()) / w.sum(1, keepdim=True)
    last = keep.shape[1] - 1 - keep.flip(1).int().argmax(1)
    return x[torch.arange(x.shape[0], device=x.device), last].double()


def _check_pool(pool: str) -> None:
    if pool not in ("mean", "last"):
        raise ValueError(f"unknown pool {pool!r}: use 'mean' or 'last'")


def _check_rows(keep: torch.Tensor, start: int) -> None:
    empty = (~keep.any(1)).nonzero()
    if empty.numel():
        raise ValueError(
            f"prompt {start + int(empty[0, 0])} has no tokens to pool (only <bos>); "
            "pass non-empty texts or skip_bos=False"
        )


@torch.no_grad()
def hook_activations(
    subject: Subject,
    hook_name: str,
    prompts: Sequence[str],
    *,
    pool: Pool = "mean",
    batch_size: int = 64,
    skip_bos: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Raw activations at ``hook_name``, one pooled vector per prompt: ``[n_prompts, d]``.

    Args:
        pool: ``"mean"`` over the prompt's real tokens, or its ``"last"`` token.
        skip_bos: leave position 0 out of the mean.

    Per-head hooks (``[..., n_heads, d_head]``) are flattened to ``n_heads * d_head``.
    Returns float32 on the CPU (sums in float64).
    """
    check_prompts(prompts)
    _check_pool(pool)
    check_hook(subject, hook_name)
    out = [
        _pool(batch.acts.flatten(2), batch.keep, pool).float().cpu()
        for batch in _checked_batches(
            subject, hook_name, prompts, batch_size, skip_bos, progress, f"pool {hook_name}"
        )
    ]
    return torch.cat(out)


def _checked_batches(
    subject: Subject,
    hook_name: str,
    prompts: Sequence[str],
    batch_size: int,
    skip_bos: bool,
    progress: bool,
    desc: str,
) -> Iterator[Batch]:
    """:func:`stream` on the subject's thread setting, refusing prompts with no kept token."""
    with cpu_threads(threads(subject), subject.device):
        for batch in stream(
            subject,
            hook_name,
            prompts,
            batch_size=batch_size,
            skip_bos=skip_bos,
            progress=progress,
            desc=desc,
        ):
            _check_rows(batch.keep, batch.start)
            yield batch


@torch.no_grad()
def feature_activations(
    subject: Subject,
    dictionary: Dictionary,
    prompts: Sequence[str],
    *,
    pool: Pool = "mean",
    batch_size: int = 64,
    skip_bos: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Dictionary features, one pooled vector per prompt: ``[n_prompts, d_sae]``.

    Every token is encoded on its own and the feature activations are then pooled (``"mean"``
    over the real tokens or the ``"last"`` token), so a feature's pooled value is the average of
    what it reads at each token, not its reading of an averaged activation.
    Returns float32 on the CPU.
    """
    check_prompts(prompts)
    _check_pool(pool)
    check_compatible(subject, dictionary)
    out = []
    hook = dictionary.hook_name
    for batch in _checked_batches(
        subject, hook, prompts, batch_size, skip_bos, progress, f"features {hook}"
    ):
        if pool == "last":
            keep = batch.keep
            last = keep.shape[1] - 1 - keep.flip(1).int().argmax(1)
            rows = batch.acts[torch.arange(keep.shape[0], device=keep.device), last]
            feats = dictionary.encode(dictionary_input(rows, dictionary)).float()
            out.append(feats.cpu())
            continue
        x = dictionary_input(batch.acts[batch.keep], dictionary)
        feats = dictionary.encode(x).double()  # [N, d_sae]
        row = batch.keep.nonzero()[:, 0].to(feats.device)
        sums = torch.zeros(
            batch.keep.shape[0], feats.shape[1], dtype=torch.float64, device=feats.device
        )
        sums.index_add_(0, row, feats)
        counts = batch.keep.sum(1, keepdim=True).to(device=feats.device, dtype=torch.float64)
        out.append((sums / counts).float().cpu())
    return torch.cat(out)
