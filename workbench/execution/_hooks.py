"""Hook points: names, widths, running a model to a hook, and scoped hooks that always restore.

TransformerLens names every activation (``blocks.0.hook_resid_post``...). Everything here takes
the model itself, so the layer above (:mod:`workbench.subjects`) needs no TransformerLens import.
Scoped hooks go through ``model.hooks(...)``, which removes only the hooks of its own level on
exit: a hook added here never removes a hook the caller added (``reset_hooks()`` would).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

#: a forward hook: ``(hook name, fn(activation, *, hook) -> activation | None)``
Hook = tuple[str, Callable[..., Any]]

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.")
_EMBED_HOOKS = ("hook_embed", "hook_pos_embed", "hook_tokens")
#: hooks whose activation is one residual-stream vector per token (width d_model)
RESID_HOOK = re.compile(
    r"^(hook_embed|hook_pos_embed|blocks\.\d+\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out))$"
)


def hook_names(model: Any) -> list[str]:
    """All hook points of the model, e.g. ``"blocks.0.hook_resid_post"``."""
    return list(model.hook_dict)


def check_hook(model: Any, hook_name: str, name: str = "the model") -> None:
    """Raise ``ValueError`` naming a few real hooks when ``hook_name`` is not one of ``model``'s."""
    if hook_name not in model.hook_dict:
        names = hook_names(model)
        examples = [h for h in names if h.endswith("resid_post")][:4]
        raise ValueError(
            f"{name} has no hook {hook_name!r}; use one of its hooks, e.g. "
            f"{', '.join(examples or names[:4])} (see Subject.hook_names())"
        )


def stop_layer(model: Any, hook_name: str) -> int | None:
    """The ``stop_at_layer`` that still runs ``hook_name`` (``None``: the whole model).

    A hook inside block ``L`` needs blocks ``0..L`` (``L + 1``; for the last block this still
    skips the final norm and the unembedding); embedding hooks need no block (``0``); anything
    else (``ln_final``, ``unembed``) needs the whole model.
    """
    m = _BLOCK_HOOK.match(hook_name)
    if m is not None:
        layer = int(m.group(1)) + 1
        return layer if layer <= model.cfg.n_layers else None
    if hook_name in _EMBED_HOOKS:
        return 0
    return None


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def run_to_hook(
    model: Any, ids: torch.Tensor, hook_name: str, *, grad: bool = False
) -> torch.Tensor:
    """Activations ``[batch, pos, ...]`` at ``hook_name``, running the model only that far.

    With ``grad=True`` the activations stay in the autograd graph (for gradients through the
    model's weights or through vectors a scoped hook adds upstream).
    """
    stop = stop_layer(model, hook_name)
    ids = ids.to(_device(model))
    if not grad:
        with torch.no_grad():
            _, cache = model.run_with_cache(ids, names_filter=hook_name, stop_at_layer=stop)
        return cache[hook_name]
    box: list[torch.Tensor] = []

    def grab(x: torch.Tensor, hook: Any) -> None:
        box.append(x)

    model.run_with_hooks(ids, fwd_hooks=[(hook_name, grab)], stop_at_layer=stop)
    return box[0]


def hook_shape(model: Any, hook_name: str, name: str = "the model") -> tuple[int, ...]:
    """Shape of one token's activation at ``hook_name`` (``(d,)`` or ``(n_heads, d_head)``)."""
    check_hook(model, hook_name, name)
    if RESID_HOOK.match(hook_name):
        return (int(model.cfg.d_model),)
    tokens = torch.zeros((1, 2), dtype=torch.long)
    return tuple(int(s) for s in run_to_hook(model, tokens, hook_name).shape[2:])


def hook_width(model: Any, hook_name: str, name: str = "the model") -> int:
    """Width of one token's activation at ``hook_name``, per-head hooks flattened."""
    return math.prod(hook_shape(model, hook_name, name))


@contextlib.contextmanager
def hooks(model: Any, fwd_hooks: Sequence[Hook]) -> Iterator[Any]:
    """Attach ``fwd_hooks`` for the block; on exit remove exactly them (nested blocks compose)."""
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        yield model


def has_hooks(model: Any) -> bool:
    """Whether any forward or backward hook is attached to the model."""
    return any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())


def add_vector(hook_name: str, vector: torch.Tensor) -> Hook:
    """A hook adding ``vector`` at every position (broadcast over the activation's last axes)."""

    def add(x: torch.Tensor, *, hook: Any) -> torch.Tensor:
        v = vector.to(x.device, x.dtype)
        return x + (v if v.ndim != 1 else v.reshape(x.shape[2:]))

    return (hook_name, add)
