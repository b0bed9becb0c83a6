"""Local Hugging Face model folders (config.json + weights + tokenizer) as TransformerLens models.

Used by :func:`workbench.subjects.load_subject` for a folder spec, and for the pieces both of its
TransformerLens loaders share (folder and hub name): the weight processing (``PROCESSING``), the
tokenizer's BOS handling (:func:`with_bos`) and the quieted deprecation warnings. Nothing here
touches the network: every read is ``local_files_only``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from workbench._hub import quiet_transformers

#: How TransformerLens processes loaded weights, the same for hub names and local folders, so
#: a base model and a local fine-tune of it have comparable activations. No processing: the
#: weights are the published ones, hook values equal Hugging Face hidden states and the logits
#: equal Hugging Face logits (this is also how SAE Lens loads models by default).
PROCESSING: dict[str, Any] = {
    "fold_ln": False,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": False,
    "refactor_factored_attn_matrices": False,
}

#: Architectures (``config.json`` ``architectures[0]``) the local-folder loader converts, each
#: with TransformerLens's own config and weight converters.
LOCAL_ARCHITECTURES: dict[str, str] = {
    "GPT2LMHeadModel": "GPT-2",
    "GPTNeoForCausalLM": "GPT-Neo",
    "GPTJForCausalLM": "GPT-J",
    "GPTNeoXForCausalLM": "GPT-NeoX / Pythia",
    "OPTForCausalLM": "OPT",
    "LlamaForCausalLM": "Llama",
    "MistralForCausalLM": "Mistral",
    "Qwen2ForCausalLM": "Qwen2 / Qwen2.5",
    "Gemma2ForCausalLM": "Gemma 2",
}

#: ``model_type`` → architecture, for a config.json without an ``architectures`` list.
_MODEL_TYPE_ARCHITECTURE: dict[str, str] = {
    "gpt2": "GPT2LMHeadModel",
    "gpt_neo": "GPTNeoForCausalLM",
    "gptj": "GPTJForCausalLM",
    "gpt_neox": "GPTNeoXForCausalLM",
    "opt": "OPTForCausalLM",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
}

#: Architectures TransformerLens configures by official *name* only (its converter has no branch
#: for their Hugging Face config); the workbench maps their config.json itself.
_NAME_ONLY_ARCHITECTURES = ("Gemma2ForCausalLM",)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
)


@contextlib.contextmanager
def quiet_hooked_transformer_deprecation() -> Iterator[None]:
    """Silence TransformerLens 3.x's "HookedTransformer[.from_pretrained] is deprecated" warnings.

    The workbench pins ``transformer-lens<4`` on purpose (see DESIGN.md); the warnings name the
    caller's module, which the test configuration turns into errors.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"HookedTransformer\S* is deprecated", category=DeprecationWarning
        )
        yield


def with_bos(load: Callable[..., Any]) -> Any:
    """The tokenizer ``load(**extra)`` gives, with ``add_bos_token=True`` when it has a BOS token.

    TransformerLens's ``set_tokenizer`` re-reads any tokenizer without ``add_bos_token`` through
    ``AutoTokenizer.from_pretrained(name_or_path, add_bos_token=True)``, which drops the
    ``cache_dir``/``local_files_only`` the workbench loaded it with (so offline it would go to
    the network) and, for a folder, may rebuild a different class. Loading it that way here
    makes TransformerLens keep the tokenizer as given. Like TransformerLens, a tokenizer that
    cannot express the BOS token (ValueError) is kept without it.
    """
    tokenizer = load()
    if tokenizer.bos_token is None or tokenizer.init_kwargs.get(
        "add_bos_token", getattr(tokenizer, "add_bos_token", False)
    ):
        return tokenizer
    try:
        with_bos_token = load(add_bos_token=True)
    except ValueError:
        return tokenizer
    with_bos_token.padding_side = tokenizer.padding_side
    return with_bos_token


def _local_architecture(path: Path) -> tuple[dict[str, Any], str]:
    """Read ``config.json`` of a local model folder; return it and the supported architecture.

    Raises:
        ValueError: no or unreadable config.json, or an architecture the loader cannot convert.
    """
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{str(path)!r} is not a Hugging Face model folder: it has no config.json. A local "
            "model folder holds config.json, the weights (model.safetensors or pytorch_model.bin) "
            "and the tokenizer files, as written by model.save_pretrained(folder) and "
            "tokenizer.save_pretrained(folder)."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {str(config_file)!r} as JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{str(config_file)!r} is not a JSON object")
    architectures = config.get("architectures") or []
    if architectures:
        architecture = str(architectures[0])
    else:
        architecture = _MODEL_TYPE_ARCHITECTURE.get(str(config.get("model_type")), "")
    if architecture not in LOCAL_ARCHITECTURES:
        supported = ", ".join(f"{a} ({n})" for a, n in LOCAL_ARCHITECTURES.items())
        found = (
            f"architecture {architecture!r}"
            if architecture
            else f"no 'architectures' entry (model_type {config.get('model_type')!r})"
        )
        raise ValueError(
            f"cannot load {str(path)!r}: its config.json names {found}, which the workbench "
            f"cannot convert to TransformerLens. Supported architectures: {supported}."
        )
    if config.get("quantization_config"):
        raise ValueError(
            f"cannot load {str(path)!r}: it holds quantized weights "
            f"({config['quantization_config'].get('quant_method', '?')}); save it unquantized "
            "(float32/bfloat16) first"
        )
    return config, architecture


def _gemma2_config(hf_config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """The ``HookedTransformerConfig`` of a Gemma 2 config.json (any size, any layer count).

    TransformerLens knows Gemma 2 only by the official names (``google/gemma-2-2b``...), each a
    hard-coded dict; this reads the same fields from the Hugging Face config instead: RMS pre- and
    post-norms, the gated tanh-GELU MLP, grouped-query attention scaled by
    ``query_pre_attn_scalar``, alternating sliding-window (even layers) and global attention,
    and the attention and output logit soft caps.
    """
    from transformer_lens import HookedTransformerConfig

    c = hf_config
    n_layers = int(c.num_hidden_layers)
    layer_types = getattr(c, "layer_types", None) or [
        "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)
    ]
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)
    rope = getattr(c, "rope_parameters", None) or {}
    rope_theta = getattr(c, "rope_theta", None) or rope.get("rope_theta", 10000.0)
    cfg_dict: dict[str, Any] = {
        "d_model": int(c.hidden_size),
        "d_head": head_dim,
        "n_heads": int(c.num_attention_heads),
        "n_key_value_heads": int(c.num_key_value_heads),
        "d_mlp": int(c.intermediate_size),
        "n_layers": n_layers,
        "n_ctx": int(c.max_position_embeddings),
        "eps": float(c.rms_norm_eps),
        "d_vocab": int(c.vocab_size),
        "act_fn": str(getattr(c, "hidden_activation", None) or "gelu_pytorch_tanh"),
        "initializer_range": float(c.initializer_range),
        "normalization_type": "RMS",
        "rotary_base": float(rope_theta),
        "rotary_dim": head_dim,
        "positional_embedding_type": "rotary",
        "use_attn_scale": True,
        "attn_scale": float(c.query_pre_attn_scalar) ** 0.5,
        "window_size": int(c.sliding_window),
        "use_local_attn": True,
        "attn_types": ["local" if t == "sliding_attention" else "global" for t in layer_types],
        "attn_scores_soft_cap": float(c.attn_logit_softcapping or -1.0),
        "output_logits_soft_cap": float(c.final_logit_softcapping or -1.0),
        "gated_mlp": True,
        "final_rms": True,
        "use_normalization_before_and_after": True,
        "original_architecture": "Gemma2ForCausalLM",
        "init_weights": False,
        "device": str(device),
        "dtype": dtype,
        "default_prepend_bos": True,
    }
    return HookedTransformerConfig.from_dict(cfg_dict)


def _local_config(
    path: Path,
    config: dict[str, Any],
    hf_model: Any,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Build the ``HookedTransformerConfig`` of a local folder with TransformerLens's converter.

    TransformerLens's ``get_pretrained_model_config`` accepts a folder, but picks some
    architectures by *name* (any path containing "llama" or "gemma" is treated as an official
    Meta/Google checkpoint). So the config.json is copied into a neutrally named temporary folder
    and converted from there, never touching the network. GPT-2 configs written by recent
    ``transformers`` lack ``n_ctx``, which the converter reads; it is filled from ``n_positions``.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    if hf_model.config.architectures and hf_model.config.architectures[0] in (
        _NAME_ONLY_ARCHITECTURES
    ):
        cfg = _gemma2_config(hf_model.config, device, dtype)
        cfg.model_name = path.name
        cfg.tokenizer_name = str(path)
        return cfg
    patched = dict(config)
    if patched.get("model_type") == "gpt2" and "n_ctx" not in patched:
        patched["n_ctx"] = patched.get("n_positions", 1024)
    with tempfile.TemporaryDirectory(prefix="workbench-config-") as tmp:
        neutral = Path(tmp) / "model"
        if any(word in str(neutral).lower() for word in ("llama", "gemma")):
            neutral = Path(tmp) / "m"  # the temp root names a model family: fall back
            if any(word in str(neutral).lower() for word in ("llama", "gemma")):
                raise ValueError(
                    f"the temporary folder {tmp!r} contains 'llama' or 'gemma', which confuses "
                    "TransformerLens's config converter; set TMPDIR to another folder"
                )
        neutral.mkdir()
        (neutral / "config.json").write_text(json.dumps(patched), encoding="utf-8")
        cfg = get_pretrained_model_config(
            str(neutral),
            hf_cfg=hf_model.config.to_dict(),
            fold_ln=PROCESSING["fold_ln"],
            device=str(device),
            dtype=dtype,
            local_files_only=True,
        )
    if patched.get("model_type") == "gpt2" and patched.get("n_inner"):
        # TransformerLens's GPT-2 converter assumes d_mlp = 4 * d_model; a config.json with
        # n_inner (GPT-2's own MLP width field) says otherwise
        cfg.d_mlp = int(patched["n_inner"])
    cfg.model_name = path.name
    cfg.tokenizer_name = str(path)
    return cfg


def _load_local_tokenizer(path: Path) -> Any:
    """The tokenizer saved in ``path``, read with ``local_files_only=True``.

    ``AutoTokenizer`` by default; but a generic fast tokenizer (``tokenizer_class``
    ``PreTrainedTokenizerFast`` / ``TokenizersBackend``, e.g. a word-level one built with the
    ``tokenizers`` library) is loaded as exactly that: transformers 5's ``AutoTokenizer`` would
    otherwise rebuild it as the model type's own tokenizer class (for ``qwen2`` it then encodes
    nothing), silently changing the token ids.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer_class = None
    config_file = path / "tokenizer_config.json"
    if config_file.is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError, json.JSONDecodeError):
            tokenizer_config = json.loads(config_file.read_text(encoding="utf-8"))
            if isinstance(tokenizer_config, dict):
                tokenizer_class = tokenizer_config.get("tokenizer_class")
    generic = tokenizer_class in {"PreTrainedTokenizerFast", "TokenizersBackend"}
    try:
        loader = (
            PreTrainedTokenizerFast
            if generic and (path / "tokenizer.json").is_file()
            else AutoTokenizer
        )
        return with_bos(
            lambda **extra: loader.from_pretrained(str(path), local_files_only=True, **extra)
        )
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(
            f"cannot load the tokenizer of {str(path)!r}: {err}. Save a working tokenizer "
            "beside the weights with tokenizer.save_pretrained(folder)"
        ) from err


def is_peft_adapter(path: Path) -> bool:
    """Whether ``path`` is a PEFT adapter folder (it holds ``adapter_config.json``)."""
    return (path / "adapter_config.json").is_file()


def _merge_adapter(hf_model: Any, adapter: Path) -> Any:
    """``hf_model`` with the PEFT adapter in ``adapter`` merged into its weights (``peft``)."""
    try:
        from peft import PeftModel
    except ImportError as err:  # pragma: no cover - peft is a dependency
        raise ValueError("a PEFT adapter needs the `peft` package: pip install peft") from err
    if not is_peft_adapter(adapter):
        raise ValueError(
            f"{str(adapter)!r} is not a PEFT adapter folder: it has no adapter_config.json "
            "(write one with peft_model.save_pretrained(folder)); a full fine-tune is a model "
            "folder with config.json instead"
        )
    try:
        merged = PeftModel.from_pretrained(hf_model, str(adapter), is_trainable=False)
        return merged.merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(
            f"cannot apply the PEFT adapter {str(adapter)!r} to this base model: {err}. The "
            "adapter must have been trained on the same base (its adapter_config.json names "
            "base_model_name_or_path and target_modules)"
        ) from err


def load_local_hf(
    path: Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    adapter: Path | None = None,
) -> tuple[HookedTransformer, Any]:
    """Load a local Hugging Face model folder (config.json + weights + tokenizer).

    Returns the TransformerLens model and its tokenizer; ``load_subject`` wraps them as a Subject
    named after the folder. ``path`` should be resolved (absolute). The folder is read with
    ``local_files_only=True`` (no network, ever). The Hugging Face model is loaded in ``dtype``
    (so the load holds two copies of the weights at that precision, never a float32 one),
    converted with TransformerLens's own config and weight converters and left unprocessed (see
    ``PROCESSING``), so the model's logits equal the folder's model's. With ``adapter`` (a PEFT
    adapter folder), the adapter is merged into the Hugging Face weights first
    (``merge_and_unload``). Supported architectures: the
    keys of ``LOCAL_ARCHITECTURES`` (GPT-2, GPT-Neo, GPT-J, GPT-NeoX/Pythia, OPT, Llama,
    Mistral, Qwen2, Gemma 2).

    Raises:
        ValueError: no config.json, unsupported architecture, no weights or no tokenizer.
    """
    config, architecture = _local_architecture(path)
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise ValueError(
            f"cannot load {str(path)!r}: no weights found (expected one of "
            f"{', '.join(WEIGHT_FILES)}); write them with model.save_pretrained(folder)"
        )
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise ValueError(
            f"cannot load {str(path)!r}: the folder has no tokenizer (none of "
            f"{', '.join(_TOKENIZER_FILES)}); save one beside the weights with "
            "tokenizer.save_pretrained(folder)"
        )

    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict
    from transformers import AutoModelForCausalLM

    tokenizer = _load_local_tokenizer(path)
    try:
        with quiet_transformers():
            hf_model = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, dtype=dtype
            )
    except (OSError, ValueError) as err:
        raise ValueError(
            f"cannot load the {LOCAL_ARCHITECTURES[architecture]} weights in {str(path)!r} "
            f"with transformers: {err}"
        ) from err
    if adapter is not None:
        with quiet_transformers():
            hf_model = _merge_adapter(hf_model, Path(adapter))
    hf_model.eval()
    for param in hf_model.parameters():
        param.requires_grad_(False)

    cfg = _local_config(path, config, hf_model, device, dtype)
    state_dict = get_pretrained_state_dict(str(path), cfg, hf_model, dtype=dtype)
    del hf_model
    with quiet_hooked_transformer_deprecation():
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state_dict, **PROCESSING)
    model.move_model_modules_to_device()
    return model, model.tokenizer or tokenizer
