"""Subjects: the model under study, loaded from one of three places.

A :class:`Subject` bundles a TransformerLens ``HookedTransformer`` with its tokenizer, a name, the
sha256 fingerprint of its weights and the device it lives on. Every other module takes a Subject;
TransformerLens is only touched here and in ``activations`` so a later move to another backend
changes two modules.

``load_subject(spec)`` accepts:

* ``"organism"`` (the default): the embedded model organism (built and cached if missing);
  ``"organism:SEED"`` picks another seed.
* a TransformerLens model name such as ``"gpt2"`` (needs the weights in the Hugging Face cache
  or a reachable hub; offline it fails fast with a message naming the fix);
* a local Hugging Face model folder (``config.json`` + weights + tokenizer).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import tempfile
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from workbench._device import resolve_device
from workbench.fingerprint import model_sha256


@dataclass(frozen=True)
class Subject:
    """A model under study.

    Attributes:
        model: the TransformerLens model (never modified in place by the workbench).
        tokenizer: a Hugging Face tokenizer (the organism's is a word-level
            ``PreTrainedTokenizerFast``).
        name: human-readable name, e.g. ``"organism-s0"`` or ``"gpt2"``.
        fingerprint: sha256 of the weights (:func:`workbench.fingerprint.model_sha256`).
        device: where the model lives.
        source: ``"organism"``, ``"transformer_lens"`` or ``"local_hf"``.
        path: the folder the weights were read from, if any.
    """

    model: HookedTransformer
    tokenizer: Any
    name: str
    fingerprint: str
    device: torch.device
    source: str
    path: Path | None = None

    def hook_names(self) -> list[str]:
        """All hook points of the model, e.g. ``"blocks.0.hook_resid_post"``."""
        return list(self.model.hook_dict)

    def encode(
        self, texts: Sequence[str], length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of ``texts`` (each starting with BOS, right-padded) and a mask of real tokens.

        Ids and mask live on the subject's device.
        """
        tok = self.model.tokenizer if self.model.tokenizer is not None else self.tokenizer
        if tok is None:
            raise ValueError(f"{self.name} has no tokenizer; pass token ids instead of texts")
        if len(texts) == 0:
            raise ValueError("no texts to encode: the prompt set is empty")
        bos = tok.bos_token_id
        rows = []
        for t in texts:
            ids = list(tok(t, add_special_tokens=True)["input_ids"])
            if bos is not None and (not ids or ids[0] != bos):
                ids = [bos, *ids]
            rows.append(ids)
        n = length or max(len(r) for r in rows)
        if any(len(r) > n for r in rows):
            raise ValueError(f"a text has more than {n} tokens; raise `length`")
        pad = tok.pad_token_id if tok.pad_token_id is not None else (bos or 0)
        ids_t = torch.full((len(rows), n), int(pad), dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids_t[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return ids_t.to(self.device), mask.to(self.device)

    def hook_dim(self, hook_name: str) -> int:
        """Width of the activation at ``hook_name`` (what a dictionary's ``d_in`` must equal)."""
        if hook_name not in self.model.hook_dict:
            raise KeyError(
                f"{self.name} has no hook {hook_name!r}; examples: "
                f"{', '.join(self.hook_names()[:6])} (see Subject.hook_names())"
            )
        tokens = torch.zeros((1, 2), dtype=torch.long, device=self.device)
        with torch.no_grad():
            _, cache = self.model.run_with_cache(tokens, names_filter=hook_name)
        return int(cache[hook_name].shape[-1])


def make_subject(
    model: HookedTransformer,
    tokenizer: Any,
    name: str,
    source: str,
    path: Path | None = None,
) -> Subject:
    """Wrap an already-built model as a :class:`Subject`, computing its fingerprint."""
    model.eval()
    device = next(model.parameters()).device
    return Subject(
        model=model,
        tokenizer=tokenizer,
        name=name,
        fingerprint=model_sha256(model),
        device=device,
        source=source,
        path=path,
    )


def load_subject(spec: str = "organism", device: str | torch.device = "auto") -> Subject:
    """Load the model under study.

    Args:
        spec: ``"organism"`` / ``"organism:SEED"``, a TransformerLens model name, or a local
            Hugging Face model folder.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...

    Raises:
        ValueError: the spec names nothing loadable; the message says what to do.
    """
    dev = resolve_device(device)
    if spec == "organism" or spec.startswith("organism:"):
        from workbench.organism import load_organism

        seed = 0
        if ":" in spec:
            try:
                seed = int(spec.split(":", 1)[1])
            except ValueError as err:
                raise ValueError(
                    f"bad organism spec {spec!r}: write 'organism' or 'organism:SEED' (an integer)"
                ) from err
        built = load_organism(seed=seed, device=dev)
        return make_subject(built.model, built.tokenizer, built.name, "organism", built.path)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_local_hf(path, dev)
    return _load_transformer_lens(spec, dev)


# --------------------------------------------------------------------------------------------
# TransformerLens names and local Hugging Face folders
# --------------------------------------------------------------------------------------------

#: How TransformerLens processes loaded weights, the same for hub names and local folders, so
#: a base model and a local fine-tune of it have comparable activations. No processing: the
#: weights are the published ones, hook values equal Hugging Face hidden states and the logits
#: equal Hugging Face logits (this is also how SAE Lens loads models by default).
_PROCESSING: dict[str, Any] = {
    "fold_ln": False,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": False,
    "refactor_factored_attn_matrices": False,
}

#: Architectures (``config.json`` ``architectures[0]``) the local-folder loader converts, each
#: with TransformerLens's own config and weight converters.
_LOCAL_ARCHITECTURES: dict[str, str] = {
    "GPT2LMHeadModel": "GPT-2",
    "GPTNeoForCausalLM": "GPT-Neo",
    "GPTJForCausalLM": "GPT-J",
    "GPTNeoXForCausalLM": "GPT-NeoX / Pythia",
    "OPTForCausalLM": "OPT",
    "LlamaForCausalLM": "Llama",
    "MistralForCausalLM": "Mistral",
    "Qwen2ForCausalLM": "Qwen2 / Qwen2.5",
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
}

_WEIGHT_FILES = (
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
#: TransformerLens repos whose loader lists the repo's files on the hub (no offline load).
_HUB_ONLY_PREFIXES = ("NeelNanda/", "ArthurConmy/", "Baidicoot/")
_DEFAULT_ENDPOINT = "https://huggingface.co"
_PROBE_TIMEOUT_S = 2.5


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hf_offline_env() -> bool:
    """Whether the user asked for cache-only Hugging Face access (read now, not at import)."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def _hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, from the environment as it is now.

    ``HF_HUB_CACHE`` (or the legacy ``HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``). Read at call time, so a
    change to ``HF_HOME`` after import is honoured (and passed on to the loaders as ``cache_dir``).
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


def _hub_reachable(endpoint: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether ``endpoint`` answers an HTTP HEAD within ``timeout`` seconds (any status counts).

    Runs in a daemon thread so a slow DNS resolver cannot stretch the wait past ``timeout``.
    Honours the usual proxy variables (``HTTPS_PROXY``...) through :mod:`urllib`.
    """
    result: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(endpoint, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
            result.append(True)
        except urllib.error.HTTPError:
            result.append(True)  # the server answered, with an error status: reachable
        except (OSError, ValueError):
            result.append(False)

    thread = threading.Thread(target=probe, name="workbench-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _cached_file(repo_id: str, filename: str, cache_dir: Path) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir))
    return isinstance(found, str)


def _missing_from_cache(official: str, cache_dir: Path) -> list[str]:
    """What a cache-only load of the hub repo ``official`` would miss (empty: all there)."""
    if official.startswith(_HUB_ONLY_PREFIXES):
        return ["(TransformerLens lists this repo's files on the hub: it has no cache-only load)"]
    missing = []
    if not _cached_file(official, "config.json", cache_dir):
        missing.append("config.json")
    if not any(_cached_file(official, f, cache_dir) for f in _WEIGHT_FILES):
        missing.append("weights (" + " / ".join(_WEIGHT_FILES) + ")")
    return missing


def _offline_fix(name: str, official: str) -> str:
    return (
        f"To fix: on a machine with internet run `huggingface-cli download {official}` (or "
        f"`hf download {official}`, or HookedTransformer.from_pretrained({name!r}) once); copy "
        "its Hugging Face cache folder here and set HF_HOME to it (export HF_HOME=/path/to/"
        "huggingface, the folder that holds hub/); set HF_HUB_OFFLINE=1 to use only the cache. "
        "Without any download, load_subject('organism') gives the embedded model organism, and "
        "a local model folder (config.json + weights + tokenizer) loads without the hub."
    )


def _unknown_name_error(name: str) -> ValueError:
    """A ValueError for a spec that is neither a folder nor a TransformerLens model name."""
    from transformer_lens.supported_models import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    display: dict[str, str] = {}
    for official in OFFICIAL_MODEL_NAMES:
        display.setdefault(official.lower(), official)
        for alias in MODEL_ALIASES.get(official, []):
            display.setdefault(alias.lower(), alias)
    close = difflib.get_close_matches(name.lower(), list(display), n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(display[c]) for c in close)}?" if close else ""
    looks_like_path = os.sep in name or "/" in name or name.startswith((".", "~"))
    what = (
        f"there is no folder {name!r}, and it is not a TransformerLens model name either."
        if looks_like_path
        else f"{name!r} is not a TransformerLens model name (nor an existing folder)."
    )
    return ValueError(
        f"{what}{hint} load_subject accepts "
        "'organism' (or 'organism:SEED') for the embedded model organism, a TransformerLens "
        "name such as 'gpt2' (list: transformer_lens.supported_models.OFFICIAL_MODEL_NAMES), or "
        "a local Hugging Face model folder (config.json + weights + tokenizer files)."
    )


@contextlib.contextmanager
def _quiet_hooked_transformer_deprecation() -> Iterator[None]:
    """Silence TransformerLens 3.x's "HookedTransformer[.from_pretrained] is deprecated" warnings.

    The workbench pins ``transformer-lens<4`` on purpose (see DESIGN.md); the warnings name the
    caller's module, which the test configuration turns into errors.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"HookedTransformer\S* is deprecated", category=DeprecationWarning
        )
        yield


def _load_transformer_lens(name: str, device: torch.device) -> Subject:
    """Load a TransformerLens model name (e.g. ``"gpt2"``) as a Subject.

    The hub repo behind the name is resolved first and the local Hugging Face cache checked for
    its config.json and weights; then the hub is probed once with a short timeout (not under
    ``HF_HUB_OFFLINE=1``). Missing files with an unreachable hub raise at once, instead of after
    ``huggingface_hub``'s half-minute of retries. With everything cached and the hub unreachable
    (or ``HF_HUB_OFFLINE=1``), the load is cache-only (``local_files_only``). Weights are loaded
    unprocessed (see ``_PROCESSING``).

    Raises:
        ValueError: unknown name (with close matches), or weights missing offline (with the fix).
    """
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError:
        raise _unknown_name_error(name) from None

    cache_dir = _hf_hub_cache()
    endpoint = _hub_endpoint()
    missing = _missing_from_cache(official, cache_dir)
    env_offline = _hf_offline_env()
    offline = env_offline or not _hub_reachable(endpoint)
    if offline and missing:
        why = (
            "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so the hub is not asked"
            if env_offline
            else f"the hub ({endpoint}) is unreachable (probe timeout {_PROBE_TIMEOUT_S:g} s)"
        )
        raise ValueError(
            f"cannot load TransformerLens model {name!r} (Hugging Face repo {official!r}): "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the local "
            f"Hugging Face cache ({cache_dir}) and {why}. " + _offline_fix(name, official)
        )

    from transformers import AutoTokenizer

    hub_kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)}
    if offline:
        hub_kwargs["local_files_only"] = True
    try:
        tokenizer = _with_bos(
            lambda **extra: AutoTokenizer.from_pretrained(official, **hub_kwargs, **extra)
        )
        with _quiet_hooked_transformer_deprecation():
            model = HookedTransformer.from_pretrained(
                name,
                device=str(device),
                tokenizer=tokenizer,
                **_PROCESSING,
                **hub_kwargs,
            )
    except OSError as err:
        if not offline:
            raise
        raise ValueError(
            f"cannot load TransformerLens model {name!r} (Hugging Face repo {official!r}) from "
            f"the local Hugging Face cache ({cache_dir}) without the hub: {err}. "
            + _offline_fix(name, official)
        ) from err
    return make_subject(model, model.tokenizer or tokenizer, name, "transformer_lens")


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
    if architecture not in _LOCAL_ARCHITECTURES:
        supported = ", ".join(f"{a} ({n})" for a, n in _LOCAL_ARCHITECTURES.items())
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


def _local_config(path: Path, config: dict[str, Any], hf_model: Any, device: torch.device) -> Any:
    """Build the ``HookedTransformerConfig`` of a local folder with TransformerLens's converter.

    TransformerLens's ``get_pretrained_model_config`` accepts a folder, but picks some
    architectures by *name* (any path containing "llama" or "gemma" is treated as an official
    Meta/Google checkpoint). So the config.json is copied into a neutrally named temporary folder
    and converted from there, never touching the network. GPT-2 configs written by recent
    ``transformers`` lack ``n_ctx``, which the converter reads; it is filled from ``n_positions``.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

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
            fold_ln=_PROCESSING["fold_ln"],
            device=str(device),
            dtype=torch.float32,
            local_files_only=True,
        )
    cfg.model_name = path.name
    cfg.tokenizer_name = str(path)
    return cfg


def _with_bos(load: Callable[..., Any]) -> Any:
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
        with_bos = load(add_bos_token=True)
    except ValueError:
        return tokenizer
    with_bos.padding_side = tokenizer.padding_side
    return with_bos


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
        return _with_bos(
            lambda **extra: loader.from_pretrained(str(path), local_files_only=True, **extra)
        )
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(
            f"cannot load the tokenizer of {str(path)!r}: {err}. Save a working tokenizer "
            "beside the weights with tokenizer.save_pretrained(folder)"
        ) from err


def _load_local_hf(path: Path, device: torch.device) -> Subject:
    """Load a local Hugging Face model folder (config.json + weights + tokenizer) as a Subject.

    The folder is read with ``local_files_only=True`` (no network, ever). The Hugging Face model
    is loaded in float32, converted with TransformerLens's own config and weight converters and
    left unprocessed (see ``_PROCESSING``), so the Subject's logits equal the folder's model's.
    Supported architectures: the keys of ``_LOCAL_ARCHITECTURES`` (GPT-2, GPT-Neo, GPT-J,
    GPT-NeoX/Pythia, OPT, Llama, Mistral, Qwen2).

    Raises:
        ValueError: no config.json, unsupported architecture, no weights or no tokenizer.
    """
    path = path.resolve()
    config, architecture = _local_architecture(path)
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise ValueError(
            f"cannot load {str(path)!r}: no weights found (expected one of "
            f"{', '.join(_WEIGHT_FILES)}); write them with model.save_pretrained(folder)"
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
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError) as err:
        raise ValueError(
            f"cannot load the {_LOCAL_ARCHITECTURES[architecture]} weights in {str(path)!r} "
            f"with transformers: {err}"
        ) from err
    hf_model.eval()
    for param in hf_model.parameters():
        param.requires_grad_(False)

    cfg = _local_config(path, config, hf_model, device)
    state_dict = get_pretrained_state_dict(str(path), cfg, hf_model, dtype=torch.float32)
    del hf_model
    with _quiet_hooked_transformer_deprecation():
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state_dict, **_PROCESSING)
    model.move_model_modules_to_device()
    return make_subject(model, model.tokenizer or tokenizer, path.name, "local_hf", path)
