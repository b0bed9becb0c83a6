"""Forward passes: logits and the log-likelihood of completions.

One definition of "the loss of a completion" for the whole package: the fine-tune trains on
:func:`completion_nll`, the forecast differentiates :func:`per_example_nll`, and the behaviour
scorers sum the same token log-probabilities (:func:`completion_logprobs`).
``target`` masks mark the tokens scored (the completion); the prompt is context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: anything called on token ids that returns logits: a model, or a model with adapters swapped in
Forward = Callable[[torch.Tensor], torch.Tensor]


def logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits ``[batch, pos, d_vocab]`` (no gradient)."""
    with torch.no_grad():
        out: torch.Tensor = model(ids)
    return out


def _token_logprobs(forward: Forward, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``log p(ids[:, t + 1] | ids[:, :t + 1])`` for every position ``[batch, pos - 1]``."""
    logp = torch.log_softmax(forward(ids)[:, :-1].to(dtype), dim=-1)
    return logp.gather(-1, ids[:, 1:, None])[..., 0]


def completion_nll(forward: Forward, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the tokens where ``target`` is true (float32)."""
    nll = -_token_logprobs(forward, ids, torch.float32)
    m = target[:, 1:].float()
    return (nll * m).sum() / m.sum().clamp_min(1.0)


def per_example_nll(
    forward: Forward, ids: torch.Tensor, target: torch.Tensor, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion NLL of each example ``[n]`` and its completion token count ``[n]``."""
    nll = -_token_logprobs(forward, ids, dtype)
    m = target[:, 1:].to(nll.dtype)
    return (nll * m).sum(1), m.sum(1)


def completion_logprobs(model: Any, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each example's completion tokens (float64 ``[n]``, no grad)."""
    with torch.no_grad():
        tok = _token_logprobs(model, ids, torch.float64)
    return (tok * target[:, 1:].double()).sum(1)
