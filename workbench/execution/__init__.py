"""The model-execution layer: every TransformerLens call of the workbench goes through here.

The layers above (:mod:`~workbench.subjects`, activations, forecasts, fine-tunes, behaviour,
patches) hand this layer a model and token ids and get tensors back; none of them imports
``transformer_lens``. A later move to TransformerLens 4's bridge or to nnsight changes this
package alone (and the organism's model construction).

* loading: :func:`load_hub_model` (a TransformerLens name), :func:`load_local_model` (a Hugging
  Face folder);
* hooks: :func:`hook_names`, :func:`check_hook`, :func:`hook_shape`, :func:`hook_width`,
  :func:`stop_layer`, :func:`run_to_hook` (the model runs only as far as the hook), and
  :func:`hooks`, scoped hooks that compose and remove exactly themselves on exit;
* forward passes: :func:`logits`, :func:`completion_nll`, :func:`per_example_nll`,
  :func:`completion_logprobs` (one definition of a completion's loss);
* generation: :func:`generate` (sampled or greedy, EOS and stop tokens), :func:`decode`,
  :func:`render_prompts` (the chat template where the tokenizer has one);
* structure: :func:`dims`, :func:`copy_model`, :func:`residual_writers`,
  :func:`residual_write_hooks`, :func:`fold_into_bias`, :func:`backend_versions`.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

from workbench.execution._forward import (
    Forward,
    completion_logprobs,
    completion_nll,
    logits,
    per_example_nll,
)
from workbench.execution._generate import decode, generate, render_prompts
from workbench.execution._hooks import (
    RESID_HOOK,
    Hook,
    add_vector,
    check_hook,
    has_hooks,
    hook_names,
    hook_shape,
    hook_width,
    hooks,
    run_to_hook,
    stop_layer,
)
from workbench.execution._structure import (
    check_foldable,
    copy_model,
    dims,
    fold_into_bias,
    post_norm_architectures,
    residual_write_hooks,
    residual_writers,
)

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer as Model
else:
    Model = Any

__all__ = [
    "RESID_HOOK",
    "Forward",
    "Hook",
    "Model",
    "add_vector",
    "backend_versions",
    "check_foldable",
    "check_hook",
    "completion_logprobs",
    "completion_nll",
    "copy_model",
    "decode",
    "dims",
    "fold_into_bias",
    "generate",
    "has_hooks",
    "hook_names",
    "hook_shape",
    "hook_width",
    "hooks",
    "is_peft_adapter",
    "load_hub_model",
    "load_local_model",
    "logits",
    "per_example_nll",
    "post_norm_architectures",
    "render_prompts",
    "residual_write_hooks",
    "residual_writers",
    "run_to_hook",
    "stop_layer",
]


def is_peft_adapter(path: Any) -> bool:
    """Whether ``path`` is a PEFT adapter folder (it holds ``adapter_config.json``)."""
    from pathlib import Path

    from workbench.execution._local_models import is_peft_adapter as check

    return check(Path(path))


def load_hub_model(name: str, device: Any, dtype: Any = None) -> tuple[Model, Any]:
    """A TransformerLens model name (``"gpt2"``...) and its tokenizer; fails fast offline."""
    import torch

    from workbench.execution._hub_models import load_transformer_lens

    return load_transformer_lens(name, device, dtype or torch.float32)


def load_local_model(
    path: Any, device: Any, dtype: Any = None, adapter: Any = None
) -> tuple[Model, Any]:
    """A local Hugging Face folder as a TransformerLens model and its tokenizer (no network).

    ``adapter``: a PEFT adapter folder merged into the folder's weights first (a LoRA fine-tune
    as the EM literature publishes them).
    """
    import torch

    from workbench.execution._local_models import load_local_hf

    return load_local_hf(path, device, dtype or torch.float32, adapter=adapter)


def backend_versions() -> dict[str, str | None]:
    """Installed versions of the model backend's packages (for deployment records)."""
    out: dict[str, str | None] = {}
    for key, dist in (("transformer_lens", "transformer-lens"),):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out
