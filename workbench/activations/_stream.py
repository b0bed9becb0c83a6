"""Streaming a prompt set to one hook in batches, running the model only as far as the hook."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from workbench import execution
from workbench.dictionaries import Dictionary
from workbench.subjects import Subject

Pool = Literal["mean", "last"]

_SMALL_MODEL = 256  # d_model up to which the model runs on one CPU thread


# ------------------------------------------------------------------ running to a hook


def stop_layer(subject: Subject, hook_name: str) -> int | None:
    """The ``stop_at_layer`` that still runs ``hook_name`` (:func:`execution.stop_layer`)."""
    return execution.stop_layer(subject.model, hook_name)


def check_hook(subject: Subject, hook_name: str) -> None:
    subject.check_hook(hook_name)


def check_prompts(prompts: Sequence[str], what: str = "prompts") -> None:
    if isinstance(prompts, str):
        raise ValueError(f"{what} must be a list of texts, not one string; wrap it: [{what}]")
    if len(prompts) == 0:
        raise ValueError(f"{what} is empty: pass at least one prompt text")


def threads(subject: Subject) -> int | None:
    return 1 if subject.d_model <= _SMALL_MODEL else None


@dataclass(frozen=True)
class Batch:
    start: int  # index of the batch's first prompt
    ids: torch.Tensor  # [B, T] on the subject's device
    mask: torch.Tensor  # [B, T] bool: real tokens
    keep: torch.Tensor  # [B, T] bool: real tokens (minus <bos> when skipped)
    acts: torch.Tensor  # [B, T, ...] activations at the hook


def stream(
    subject: Subject,
    hook_name: str,
    prompts: Sequence[str],
    *,
    batch_size: int,
    skip_bos: bool,
    progress: bool,
    desc: str,
) -> Iterator[Batch]:
    """Batches of activations at ``hook_name``, running the model only as far as the hook."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    n_ctx = subject.n_ctx
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt")
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            ids, mask = subject.encode(chunk)
            if ids.shape[1] > n_ctx:
                lengths = mask.sum(1)
                i = int(torch.argmax(lengths))
                raise ValueError(
                    f"prompt {start + i} has {int(lengths[i])} tokens but {subject.name} reads "
                    f"at most {n_ctx}; shorten or split the prompts"
                )
            keep = mask.clone()
            if skip_bos:
                keep[:, 0] = False
            acts = execution.run_to_hook(subject.model, ids, hook_name)
            yield Batch(start, ids, mask, keep, acts)
            bar.update(len(chunk))
    finally:
        bar.close()


def dictionary_input(acts: torch.Tensor, dictionary: Dictionary) -> torch.Tensor:
    """Hook activations ``[..., *hook_shape]`` as the dictionary reads them ``[..., d_in]``.

    ``acts`` holds one token per row (``[N, d]`` or ``[N, n_heads, d_head]``).
    """
    head = dictionary.sae.cfg.metadata.hook_head_index
    if head is not None and acts.ndim > 2:
        acts = acts[:, head]
    if acts.ndim > 2 and not getattr(dictionary.sae, "hook_z_reshaping_mode", False):
        acts = acts.flatten(1)
    return acts
