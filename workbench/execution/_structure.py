"""Model structure: sizes, the weights and hooks that write to the residual stream, bias folding.

What the patches and fine-tunes need to know about a TransformerLens model's layout, in one
place: which parameters write to the residual stream (for weight orthogonalization), which hooks
see every write (for directional ablation), and how a constant residual vector folds into a bias.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def dims(model: Any) -> dict[str, int]:
    """``d_model``, ``n_layers``, ``n_ctx`` and ``d_vocab`` of the model."""
    cfg = model.cfg
    return {
        "d_model": int(cfg.d_model),
        "n_layers": int(cfg.n_layers),
        "n_ctx": int(cfg.n_ctx),
        "d_vocab": int(cfg.d_vocab),
    }


def copy_model(model: Any, dtype: torch.dtype | None = None) -> Any:
    """A deep copy of the model, optionally cast to ``dtype`` (the base is never touched).

    Hooks attached to the model now come along to the copy.
    """
    new = copy.deepcopy(model)
    if dtype is not None:
        new.to(dtype, print_details=False)  # TransformerLens also sets cfg.dtype (used in forward)
    return new


def post_norm_architectures() -> frozenset[str]:
    """Architectures whose blocks normalise their output before the residual add."""
    try:
        from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES
    except ImportError:  # older TransformerLens 3.x: no post-norm architectures
        return frozenset()
    return frozenset(POST_NORM_ARCHITECTURES)


def _normalises_block_outputs(cfg: Any) -> bool:
    return bool(getattr(cfg, "use_normalization_before_and_after", False)) or (
        cfg.original_architecture in post_norm_architectures()
    )


def residual_writers(model: Any) -> list[str]:
    """Names of every parameter that writes to the residual stream (residual axis last).

    Raises ``ValueError`` where a weight edit would not equal directional ablation: a norm
    between a writer and the residual stream, quantised weights, a mixture-of-experts MLP, or
    an embedding tied to the unembedding.
    """
    cfg = model.cfg
    why = None
    if getattr(cfg, "post_embedding_ln", False):
        why = "a LayerNorm after the embedding"
    elif getattr(cfg, "use_normalization_before_and_after", False):
        why = "a norm after each attention and MLP output"
    elif cfg.original_architecture in post_norm_architectures():
        why = f"post-norm blocks ({cfg.original_architecture})"
    elif getattr(cfg, "load_in_4bit", False):
        why = "4-bit quantised weights"
    if why is not None:
        raise ValueError(
            f"{cfg.model_name} has {why}, so a weight edit is not exact directional ablation; "
            "use Ablate(direction).applied(subject) (hooks) instead"
        )
    names = ["embed.W_E"]
    if cfg.positional_embedding_type == "standard":
        names.append("pos_embed.W_pos")
    for layer in range(cfg.n_layers):
        names += [f"blocks.{layer}.attn.W_O", f"blocks.{layer}.attn.b_O"]
        if not cfg.attn_only:
            names += [f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out"]
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params or params[n].shape[-1] != cfg.d_model]
    if missing:
        raise ValueError(
            f"{cfg.model_name} has no plain residual-writing weight {missing[0]!r} (e.g. a "
            "mixture-of-experts MLP); use Ablate(direction).applied(subject) (hooks) instead"
        )
    W_U = getattr(getattr(model, "unembed", None), "W_U", None)
    if isinstance(W_U, torch.Tensor) and (
        W_U.untyped_storage().data_ptr() == params["embed.W_E"].untyped_storage().data_ptr()
    ):
        raise ValueError(
            f"{cfg.model_name} ties W_E to W_U: orthogonalizing W_E would also edit the "
            "unembedding; use Ablate(direction).applied(subject) (hooks) instead"
        )
    return names


def residual_write_hooks(model: Any) -> list[str]:
    """The hooks that see every write to the residual stream (embeddings, attention, MLP outs).

    ``hook_pos_embed`` only for standard positional embeddings (shortformer, alibi and rotary
    positions never enter the stream).
    """
    cfg = model.cfg
    names = ["hook_embed"]
    if cfg.positional_embedding_type == "standard":
        names.append("hook_pos_embed")
    for layer in range(cfg.n_layers):
        names.append(f"blocks.{layer}.hook_attn_out")
        if not cfg.attn_only:
            names.append(f"blocks.{layer}.hook_mlp_out")
    return [n for n in names if n in model.hook_dict]


def check_foldable(model: Any, hook_name: str, what: str = "Steer.apply") -> None:
    """Raise ``ValueError`` unless a constant vector at ``hook_name`` folds exactly into a bias."""
    if _RESID_POST.match(hook_name) is None:
        raise ValueError(
            f"{what} can fold a vector into a bias only at blocks.L.hook_resid_post "
            f"(not {hook_name!r}); use `with Steer(...).applied(subject) as s:` for any hook"
        )
    cfg = model.cfg
    if _normalises_block_outputs(cfg):
        raise ValueError(
            f"{cfg.model_name} normalises each block output before the residual add, so "
            "the vector cannot be folded into a bias; use Steer(...).applied(subject)"
        )


def fold_into_bias(model: Any, hook_name: str, vector: torch.Tensor) -> None:
    """Add a constant residual vector at ``blocks.L.hook_resid_post`` to that block's output bias.

    ``resid_post = resid_mid + mlp_out`` and ``mlp_out`` ends with ``+ b_out`` (for attention-only
    models ``attn_out`` and ``b_O``), so the edited model computes exactly what the vector did.
    Edits ``model`` in place (callers pass a private copy).
    """
    check_foldable(model, hook_name)
    m = _RESID_POST.match(hook_name)
    assert m is not None
    cfg = model.cfg
    block = model.blocks[int(m.group(1))]
    bias = block.attn.b_O if cfg.attn_only else block.mlp.b_out
    if not isinstance(bias, torch.nn.Parameter):
        raise ValueError(f"{cfg.model_name} has no output bias to fold the vector into")
    with torch.no_grad():
        v = vector.detach().to(bias.device, torch.float64)
        bias.copy_((bias.double() + v).to(bias.dtype))
