"""Dictionaries: the sparse autoencoder (SAE) that names a subject's features at one hook.

A :class:`Dictionary` is an SAE Lens ``SAE`` (in eval mode) together with the hook it reads, its
sha256 fingerprint, a name and the folder it lives in. Its decoder rows ``W_dec`` (``d_sae`` x
``d_in``) are the feature directions every later step works with (geometry, forecasts, patches).
The on-disk format is SAE Lens's own (``cfg.json`` + ``sae_weights.safetensors``), so any SAE Lens
user opens what the workbench writes with ``SAE.load_from_disk`` and the workbench opens theirs.

Three verbs:

* :func:`load_dictionary` opens a dictionary from a local SAE Lens folder, from SAE Lens's
  pretrained registry (``"release/sae_id"`` or ``("release", "sae_id")``, Hugging Face cache or
  hub; offline it fails in seconds with the fix) or ``"organism"`` (the embedded organism's own).
  Given a subject it refuses a dictionary whose width or hook does not fit that subject.
* :func:`train_dictionary` trains one with SAE Lens's own trainer
  (``LanguageModelSAETrainingRunner``) on already-tokenized sequences, deterministically per seed.
* :func:`evaluate_dictionary` measures reconstruction quality on held-out tokens
  (:class:`DictionaryStats`: explained variance, mean L0, MSE, dead fraction).

Conventions:

* **Position 0 is skipped** in training and evaluation by default (``skip_first_position``).
  Sequences start with ``<bos>``, whose residual activation is an attention-sink outlier with a
  norm far above every other token's; common SAE training setups leave it out, and it would
  otherwise dominate both the MSE and the variance.
* **Default architecture: TopK** (Gao et al. 2024) with ``k=16`` and SAE Lens's auxiliary loss
  for dead latents. ``k`` fixes the L0 directly, so there is no L1 coefficient to tune per model
  and per hook, which matters when the same call runs on a tiny organism and on GPT-2.
  ``architecture="standard"`` trains a ReLU SAE with an L1 penalty (``l1_coefficient``) instead.
  Inputs are normalised to mean norm sqrt(d_in) while training (SAE Lens's
  ``expected_average_only_in``) and the scale is folded into the saved weights, so the saved SAE
  reads raw activations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import logging
import math
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from unittest import mock
from urllib.parse import urlparse

import torch
from sae_lens import SAE, LanguageModelSAETrainingRunner

from workbench._device import resolve_device
from workbench.fingerprint import state_dict_sha256
from workbench.subjects import Subject

__all__ = [
    "Dictionary",
    "DictionaryStats",
    "check_compatible",
    "evaluate_dictionary",
    "load_dictionary",
    "train_dictionary",
]

Architecture = Literal["topk", "standard"]

#: Seconds to wait for a TCP connection to the Hugging Face endpoint before calling it offline.
HUB_PROBE_TIMEOUT_S = 3.0

_SAE_FILES = ("cfg.json", "sae_weights.safetensors")


@dataclass(frozen=True)
class DictionaryStats:
    """Reconstruction quality of a dictionary on a set of tokens.

    Attributes:
        explained_variance: ``1 - Σ‖x - x̂‖² / Σ‖x - x̄‖²`` over all evaluated tokens, with ``x̄``
            the per-dimension mean over those tokens (SAE Lens's ``explained_variance``).
        l0: mean number of non-zero features per token.
        mse: mean over tokens of the squared reconstruction error ``‖x - x̂‖²`` (summed over the
            ``d_in`` dimensions, as in SAE Lens's training ``mse_loss``).
        dead_fraction: fraction of features that never fired on these tokens.
        n_tokens: how many token activations were evaluated.
    """

    explained_variance: float
    l0: float
    mse: float
    dead_fraction: float
    n_tokens: int


@dataclass(frozen=True)
class Dictionary:
    """A sparse autoencoder attached to one hook of a model.

    Attributes:
        sae: the SAE Lens ``SAE`` (inference class, eval mode).
        hook_name: the TransformerLens hook it reads, e.g. ``"blocks.1.hook_resid_post"``
            (also stored in ``sae.cfg.metadata.hook_name``).
        fingerprint: sha256 of ``sae.state_dict()``
            (:func:`workbench.fingerprint.state_dict_sha256`).
        name: human-readable name.
        path: the SAE Lens folder it was read from or saved to, if any.
        stats: held-out reconstruction quality, when measured at training time.
    """

    sae: SAE[Any]
    hook_name: str
    fingerprint: str
    name: str
    path: Path | None = None
    stats: DictionaryStats | None = field(default=None, compare=False)

    @property
    def d_in(self) -> int:
        """Width of the activations the dictionary reads."""
        return int(self.sae.cfg.d_in)

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return int(self.sae.cfg.d_sae)

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder matrix, ``d_sae`` x ``d_in``: row ``i`` is feature ``i``'s direction."""
        return self.sae.W_dec

    @property
    def W_enc(self) -> torch.Tensor:
        """Encoder matrix, ``d_in`` x ``d_sae``."""
        return self.sae.W_enc

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        """Feature activations (``..., d_sae``) of activations ``acts`` (``..., d_in``)."""
        return self.sae.encode(acts.to(device=self.sae.device, dtype=self.sae.dtype))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """Reconstructed activations (``..., d_in``) from feature activations."""
        return self.sae.decode(feature_acts.to(device=self.sae.device, dtype=self.sae.dtype))


def _make_dictionary(
    sae: SAE[Any],
    name: str,
    path: Path | None,
    hook_name: str | None = None,
    stats: DictionaryStats | None = None,
) -> Dictionary:
    sae.eval()
    hook = hook_name or sae.cfg.metadata.hook_name
    if not hook:
        raise ValueError(
            f"dictionary {name!r} does not say which hook it reads (its cfg.json has no "
            "metadata.hook_name); pass hook_name='blocks.L.hook_...' to load_dictionary"
        )
    sae.cfg.metadata.hook_name = hook
    return Dictionary(
        sae=sae,
        hook_name=str(hook),
        fingerprint=state_dict_sha256(sae.state_dict()),
        name=name,
        path=path,
        stats=stats,
    )


# ------------------------------------------------------------------ compatibility


def _hook_trailing_shape(subject: Subject, hook_name: str) -> tuple[int, ...]:
    """Shape of one token's activation at ``hook_name`` (``(d,)`` or ``(n_heads, d_head)``)."""
    if hook_name not in subject.model.hook_dict:
        examples = ", ".join(
            h for h in subject.hook_names() if h.endswith(("resid_post", "resid_pre"))
        )
        raise ValueError(
            f"{subject.name} has no hook {hook_name!r}; pick a dictionary trained on one of its "
            f"hooks, e.g. {examples or ', '.join(subject.hook_names()[:6])} "
            "(see Subject.hook_names())"
        )
    tokens = torch.zeros((1, 2), dtype=torch.long, device=subject.device)
    with torch.no_grad():
        acts = _hook_activations(subject, hook_name, tokens)
    return tuple(int(s) for s in acts.shape[2:])


def _hook_width(subject: Subject, dictionary: Dictionary) -> int:
    """Width of the hook as this dictionary reads it (heads flattened or one head picked)."""
    shape = _hook_trailing_shape(subject, dictionary.hook_name)
    if len(shape) > 1 and dictionary.sae.cfg.metadata.hook_head_index is not None:
        return shape[-1]
    return math.prod(shape)


def check_compatible(subject: Subject, dictionary: Dictionary) -> None:
    """Raise ``ValueError`` unless ``dictionary`` can read ``subject`` at its hook.

    The hook must exist in the subject and its width must equal the dictionary's ``d_in``
    (for per-head hooks such as ``hook_z``: ``n_heads * d_head``, or ``d_head`` for an SAE
    trained on one head).
    """
    width = _hook_width(subject, dictionary)
    if width != dictionary.d_in:
        raise ValueError(
            f"dictionary {dictionary.name!r} reads d_in={dictionary.d_in} but {subject.name}'s "
            f"hook {dictionary.hook_name!r} is {width} wide; pick a dictionary trained on this "
            f"hook of this model (or train one with workbench.dictionaries.train_dictionary)"
        )


# ------------------------------------------------------------------ loading


def load_dictionary(
    spec: str | Path | tuple[str, str],
    subject: Subject | None = None,
    device: str | torch.device = "auto",
    *,
    hook_name: str | None = None,
) -> Dictionary:
    """Open a dictionary.

    Args:
        spec: a local SAE Lens folder (``cfg.json`` + ``sae_weights.safetensors``);
            ``"release/sae_id"`` or ``("release", "sae_id")`` from SAE Lens's pretrained registry
            (read from the Hugging Face cache, or the hub when reachable); or ``"organism"``,
            the embedded organism's own dictionary.
        subject: when given, the dictionary is checked against it (:func:`check_compatible`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        hook_name: the hook to use when the SAE's ``cfg.json`` does not record one
            (or to override it).

    Raises:
        ValueError: nothing loadable under ``spec``, the hub is unreachable and the files are not
            cached, or the dictionary does not fit ``subject``; the message says what to do.
    """
    dev = resolve_device(device)
    if isinstance(spec, str) and spec == "organism":
        organism = importlib.import_module("workbench.organism")
        dictionary = organism.default_dictionary(device=dev)
        if not isinstance(dictionary, Dictionary):
            raise TypeError("workbench.organism.default_dictionary did not return a Dictionary")
    elif isinstance(spec, tuple):
        if len(spec) != 2 or not all(isinstance(s, str) for s in spec):
            raise ValueError(f"bad dictionary spec {spec!r}: write ('release', 'sae_id')")
        dictionary = _load_pretrained(spec[0], spec[1], dev, hook_name)
    else:
        path = Path(spec).expanduser()
        if isinstance(spec, Path) or path.exists() or _looks_like_path(spec):
            dictionary = _load_folder(path, dev, hook_name)
        else:
            release, sae_id = _split_release(str(spec))
            dictionary = _load_pretrained(release, sae_id, dev, hook_name)
    if subject is not None:
        check_compatible(subject, dictionary)
    return dictionary


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith("/")


def _load_folder(path: Path, device: torch.device, hook_name: str | None) -> Dictionary:
    if not path.is_dir():
        raise ValueError(
            f"no SAE folder at {str(path)!r}: pass a folder written by SAE Lens's "
            "sae.save_model(folder) (cfg.json + sae_weights.safetensors)"
        )
    missing = [f for f in _SAE_FILES if not (path / f).is_file()]
    if missing:
        raise ValueError(
            f"{str(path)!r} is not an SAE Lens folder: {', '.join(missing)} missing "
            "(write one with sae.save_model(folder) or workbench's train_dictionary(out_dir=...))"
        )
    sae = SAE.load_from_disk(path, device=str(device))
    return _make_dictionary(sae, name=path.name, path=path, hook_name=hook_name)


def _split_release(spec: str) -> tuple[str, str]:
    """``"release/sae_id"`` -> (release, sae_id); sae ids may contain slashes, releases rarely."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    known = sorted(get_pretrained_saes_directory(), key=len, reverse=True)
    for release in known:
        if spec.startswith(release + "/") and len(spec) > len(release) + 1:
            return release, spec[len(release) + 1 :]
    if "/" not in spec:
        raise ValueError(
            f"unknown dictionary {spec!r}: not a local folder, not 'organism', and not "
            "'release/sae_id' of SAE Lens's pretrained registry "
            "(sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory())"
        )
    release, sae_id = spec.split("/", 1)
    return release, sae_id


def _load_pretrained(
    release: str, sae_id: str, device: torch.device, hook_name: str | None
) -> Dictionary:
    from sae_lens.loading.pretrained_saes_directory import (
        get_pretrained_saes_directory,
        get_repo_id_and_folder_name,
    )

    directory = get_pretrained_saes_directory()
    if release not in directory and "/" not in release:
        close = [r for r in directory if release.split("-")[0] in r][:5]
        raise ValueError(
            f"unknown SAE Lens release {release!r} (and no local folder by that name); "
            f"known releases include {', '.join(close or list(directory)[:5])}; the full list is "
            "sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory() "
            "(a Hugging Face repo id goes in the tuple form ('user/repo', 'sae_id'))"
        )
    if release in directory and sae_id not in directory[release].saes_map:
        ids = list(directory[release].saes_map)
        raise ValueError(
            f"SAE Lens release {release!r} has no sae_id {sae_id!r}; valid ids include "
            f"{', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
        )
    repo_id, folder = get_repo_id_and_folder_name(release, sae_id)
    offline = _hub_unreachable()
    try:
        with _hf_offline_mode(offline):
            sae = SAE.from_pretrained(release, sae_id, device=str(device))
    except OSError as err:  # LocalEntryNotFoundError, OfflineModeIsEnabled, ...
        if not offline:
            raise
        from huggingface_hub import constants

        raise ValueError(
            f"cannot load SAE Lens release {release!r} sae_id {sae_id!r} (Hugging Face repo "
            f"{repo_id!r}, folder {folder!r}): the hub is not reachable from here (or "
            f"HF_HUB_OFFLINE=1 is set) and the files are not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE!r}. Fix: on a machine with internet run "
            f"`hf download {repo_id} --include '{folder}/*'` (or SAE.from_pretrained once), copy "
            f"that cache here and point HF_HOME at it, and set HF_HUB_OFFLINE=1 so loading reads "
            f"the cache without network retries; or save the SAE with sae.save_model(folder) and "
            f"pass the folder. ({type(err).__name__}: {err})"
        ) from err
    return _make_dictionary(sae, name=f"{release}/{sae_id}", path=None, hook_name=hook_name)


def _hub_unreachable() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set or the hub endpoint does not accept a TCP connection.

    A short probe replaces huggingface_hub's own retries (about half a minute when offline).
    When an HTTPS proxy is configured the proxy is probed instead.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else constants.ENDPOINT)
    host = url.hostname
    if host is None:
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return False
    except OSError:
        return True


@contextlib.contextmanager
def _hf_offline_mode(enabled: bool) -> Iterator[None]:
    """Make huggingface_hub read only its cache (as ``HF_HUB_OFFLINE=1`` would) while active."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True):
        yield


# ------------------------------------------------------------------ activations


def _hook_activations(subject: Subject, hook_name: str, tokens: torch.Tensor) -> torch.Tensor:
    """Activations at ``hook_name`` (batch, pos, ...), running the model only as far as needed."""
    from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

    stop = extract_stop_at_layer_from_tlens_hook_name(hook_name)
    if stop is not None and stop > subject.model.cfg.n_layers:
        stop = None
    _, cache = subject.model.run_with_cache(
        tokens.to(subject.device), names_filter=hook_name, stop_at_layer=stop
    )
    return cache[hook_name]


def _check_tokens(subject: Subject, tokens: torch.Tensor, what: str) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype != torch.long:
        raise ValueError(
            f"{what} must be a LongTensor of token ids, n_seq x ctx (got "
            f"{getattr(tokens, 'dtype', type(tokens).__name__)} of shape "
            f"{tuple(getattr(tokens, 'shape', ()))}); tokenize with subject.tokenizer first"
        )
    n_seq, ctx = tokens.shape
    if n_seq == 0 or ctx == 0:
        raise ValueError(f"{what} is empty (shape {tuple(tokens.shape)})")
    if ctx > subject.model.cfg.n_ctx:
        raise ValueError(
            f"{what} has context {ctx} but {subject.name} takes at most "
            f"{subject.model.cfg.n_ctx} tokens; cut the sequences"
        )
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= subject.model.cfg.d_vocab:
        raise ValueError(
            f"{what} holds ids in [{lo}, {hi}] but {subject.name}'s vocabulary has "
            f"{subject.model.cfg.d_vocab} tokens; tokenize with this subject's tokenizer"
        )


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate_dictionary(
    subject: Subject,
    dictionary: Dictionary,
    tokens: torch.Tensor,
    *,
    batch_size: int = 32,
    skip_first_position: bool = True,
) -> DictionaryStats:
    """Reconstruction quality of ``dictionary`` on the subject's activations for ``tokens``.

    Args:
        subject: the model the dictionary reads.
        dictionary: the dictionary to evaluate (checked with :func:`check_compatible`).
        tokens: LongTensor ``n_seq x ctx`` of token ids (held out from training).
        batch_size: sequences per forward pass.
        skip_first_position: leave out position 0 (the ``<bos>`` outlier), as training does.

    Returns:
        :class:`DictionaryStats`; sums are accumulated in float64 over all evaluated tokens.
    """
    check_compatible(subject, dictionary)
    _check_tokens(subject, tokens, "tokens")
    if skip_first_position and tokens.shape[1] < 2:
        raise ValueError("with skip_first_position=True, sequences need at least 2 tokens")
    sae = dictionary.sae
    head = sae.cfg.metadata.hook_head_index
    d_in = dictionary.d_in
    start = 1 if skip_first_position else 0

    n = 0
    sum_x = torch.zeros(d_in, dtype=torch.float64)
    sum_x2 = torch.zeros((), dtype=torch.float64)
    sum_resid2 = torch.zeros((), dtype=torch.float64)
    sum_l0 = torch.zeros((), dtype=torch.float64)
    fired = torch.zeros(dictionary.d_sae, dtype=torch.bool)
    for i in range(0, tokens.shape[0], batch_size):
        acts = _hook_activations(subject, dictionary.hook_name, tokens[i : i + batch_size])
        acts = acts[:, start:]
        if head is not None and acts.ndim > 3:
            acts = acts[:, :, head]
        if acts.ndim > 3 and not getattr(sae, "hook_z_reshaping_mode", False):
            acts = acts.flatten(2)
        acts = acts.to(device=sae.device, dtype=sae.dtype)
        feats = sae.encode(acts)
        recon = sae.decode(feats)
        x = acts.reshape(-1, d_in).double().cpu()
        x_hat = recon.reshape(-1, d_in).double().cpu()
        f = feats.reshape(-1, dictionary.d_sae).cpu()
        n += x.shape[0]
        sum_x += x.sum(0)
        sum_x2 += x.pow(2).sum()
        sum_resid2 += (x - x_hat).pow(2).sum()
        active = f != 0
        sum_l0 += active.sum()
        fired |= active.any(0)
    total_variance = sum_x2 - sum_x.pow(2).sum() / n
    if total_variance <= 0:
        explained = 1.0 if float(sum_resid2) < 1e-12 else 0.0
    else:
        explained = float(1.0 - sum_resid2 / total_variance)
    return DictionaryStats(
        explained_variance=explained,
        l0=float(sum_l0 / n),
        mse=float(sum_resid2 / n),
        dead_fraction=float((~fired).double().mean()),
        n_tokens=n,
    )


# ------------------------------------------------------------------ training


def train_dictionary(
    subject: Subject,
    hook_name: str,
    tokens: torch.Tensor,
    *,
    d_sae: int | None = None,
    architecture: Architecture = "topk",
    k: int = 16,
    l1_coefficient: float = 5.0,
    training_tokens: int = 1_000_000,
    lr: float = 1e-3,
    batch_size: int = 1024,
    held_out_fraction: float = 0.1,
    eval_tokens: torch.Tensor | None = None,
    skip_first_position: bool = True,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    name: str | None = None,
    progress: bool = True,
) -> Dictionary:
    """Train a dictionary on ``subject``'s activations at ``hook_name`` with SAE Lens's trainer.

    Runs ``sae_lens.LanguageModelSAETrainingRunner`` with the subject's model and the tokens as a
    pre-tokenized ``datasets.Dataset`` (column ``input_ids``): no hub, no wandb, no checkpoints.
    The result is saved in SAE Lens's format (the runner's ``save_final_sae``) and read back with
    ``SAE.load_from_disk``, so the returned dictionary is exactly what is on disk.

    Args:
        subject: the model whose activations are encoded (never modified).
        hook_name: a TransformerLens hook of the subject, e.g. ``"blocks.1.hook_resid_post"``.
        tokens: LongTensor ``n_seq x ctx`` of token ids; sequences are read in order, in epochs.
        d_sae: number of features (default ``8 * d_in``).
        architecture: ``"topk"`` (default; ``k`` active features per token) or ``"standard"``
            (ReLU with an L1 penalty of ``l1_coefficient``).
        k: active features per token for TopK.
        l1_coefficient: L1 sparsity coefficient for ``"standard"`` (on normalised inputs).
        training_tokens: activations seen in training (several epochs over ``tokens`` if larger).
        lr: Adam learning rate (constant schedule).
        batch_size: activations per optimizer step.
        held_out_fraction: share of the sequences of ``tokens`` (taken from the end) kept out of
            training and used for :attr:`Dictionary.stats`, when ``eval_tokens`` is not given.
        eval_tokens: held-out sequences for :attr:`Dictionary.stats` (then all of ``tokens``
            train).
        skip_first_position: leave position 0 (``<bos>``) out of training and evaluation.
        seed: seeds initialisation and shuffling; the same seed gives the same fingerprint.
        out_dir: SAE Lens folder to write (``cfg.json``, ``sae_weights.safetensors``,
            ``sparsity.safetensors``, ``runner_cfg.json``); written to a temporary sibling and
            renamed when complete. ``None``: a temporary folder, removed afterwards.
        overwrite: replace an existing non-empty ``out_dir``.
        name: the dictionary's name (default from subject, hook, architecture, width, seed).
        progress: show SAE Lens's progress bar.

    Raises:
        ValueError: unknown hook, malformed tokens or hyperparameters, or ``out_dir`` in use.
    """
    from datasets import Dataset
    from sae_lens import (
        LanguageModelSAERunnerConfig,
        StandardTrainingSAEConfig,
        TopKTrainingSAEConfig,
    )
    from sae_lens.config import LoggingConfig

    _check_tokens(subject, tokens, "tokens")
    shape = _hook_trailing_shape(subject, hook_name)
    d_in = math.prod(shape)
    d_sae = 8 * d_in if d_sae is None else d_sae
    if d_sae < 1:
        raise ValueError(f"d_sae must be positive (got {d_sae})")
    if architecture not in ("topk", "standard"):
        raise ValueError(f"architecture must be 'topk' or 'standard' (got {architecture!r})")
    if architecture == "topk" and not 0 < k <= d_sae:
        raise ValueError(f"k must be in [1, d_sae={d_sae}] (got {k})")
    if batch_size < 1 or training_tokens < batch_size:
        raise ValueError(
            f"need 1 <= batch_size <= training_tokens (got {batch_size}, {training_tokens})"
        )
    if lr <= 0:
        raise ValueError(f"lr must be positive (got {lr})")
    ctx = int(tokens.shape[1])
    if skip_first_position and ctx < 2:
        raise ValueError("with skip_first_position=True, sequences need at least 2 tokens")

    train_tokens = tokens
    if eval_tokens is None:
        if not 0.0 <= held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must be in [0, 1) (got {held_out_fraction})")
        n_held = round(tokens.shape[0] * held_out_fraction)
        if held_out_fraction > 0 and tokens.shape[0] >= 2:
            n_held = min(max(n_held, 1), tokens.shape[0] - 1)
        if n_held:
            train_tokens, eval_tokens = tokens[:-n_held], tokens[-n_held:]
    else:
        _check_tokens(subject, eval_tokens, "eval_tokens")

    final_dir, work_dir, cleanup = _prepare_out_dir(out_dir, overwrite)
    dev = subject.device
    seqpos: tuple[int | None, ...] = (1, None) if skip_first_position else (None,)
    train_ctx = ctx - 1 if skip_first_position else ctx
    n_seq = int(train_tokens.shape[0])
    steps = training_tokens // batch_size
    dictionary_name = name or f"{subject.name}/{hook_name}/{architecture}-{d_sae}-s{seed}"

    sae_cfg: StandardTrainingSAEConfig | TopKTrainingSAEConfig
    common: dict[str, Any] = {
        "d_in": d_in,
        "d_sae": d_sae,
        "device": str(dev),
        "dtype": "float32",
        "normalize_activations": "expected_average_only_in",
    }
    if architecture == "topk":
        sae_cfg = TopKTrainingSAEConfig(k=k, **common)
    else:
        sae_cfg = StandardTrainingSAEConfig(l1_coefficient=l1_coefficient, **common)

    try:
        with _quiet_sae_lens(progress):
            cfg = LanguageModelSAERunnerConfig(
                sae=sae_cfg,
                model_name=subject.name,
                model_class_name="HookedTransformer",
                hook_name=hook_name,
                dataset_path="",
                is_dataset_tokenized=True,
                streaming=False,
                context_size=ctx,
                seqpos_slice=seqpos,
                prepend_bos=False,  # the tokens are used exactly as given
                model_from_pretrained_kwargs={},  # else every later load warns about them
                training_tokens=training_tokens,
                train_batch_size_tokens=batch_size,
                store_batch_size_prompts=max(1, min(32, n_seq)),
                # the mixing buffer holds n_batches_in_buffer * context tokens; keep >= 4 batches
                n_batches_in_buffer=max(20, math.ceil(4 * batch_size / train_ctx)),
                n_batches_for_norm_estimate=max(1, min(50, steps // 10)),
                lr=lr,
                lr_scheduler_name="constant",
                dead_feature_window=max(10, min(1000, steps // 10)),
                feature_sampling_window=max(20, min(2000, steps // 5)),
                device=str(dev),
                seed=seed,
                logger=LoggingConfig(log_to_wandb=False),
                n_checkpoints=0,
                checkpoint_path=None,
                save_final_checkpoint=False,
                output_path=str(work_dir),
                verbose=False,
            )
            dataset = Dataset.from_dict({"input_ids": train_tokens.cpu().numpy()})
            with _seeded(seed, dev):
                runner = _Runner(cfg, override_dataset=dataset, override_model=subject.model)
                runner.sae.cfg.metadata.workbench_subject_fingerprint = subject.fingerprint
                runner.sae.cfg.metadata.workbench_tokens_sha256 = state_dict_sha256(
                    {"tokens": train_tokens}
                )
                runner.sae.cfg.metadata.workbench_seed = seed
                runner.run()
        del runner
        if final_dir is not None:
            if final_dir.is_dir():
                shutil.rmtree(final_dir)
            elif final_dir.exists():
                final_dir.unlink()
            os.replace(work_dir, final_dir)
            work_dir = final_dir
        sae = SAE.load_from_disk(work_dir, device=str(dev))
        dictionary = _make_dictionary(sae, name=dictionary_name, path=final_dir)
        stats = None
        if eval_tokens is not None and eval_tokens.shape[0] > 0:
            stats = evaluate_dictionary(
                subject, dictionary, eval_tokens, skip_first_position=skip_first_position
            )
        return dataclasses.replace(dictionary, stats=stats)
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)


def _prepare_out_dir(
    out_dir: str | Path | None, overwrite: bool
) -> tuple[Path | None, Path, Path | None]:
    """(final folder or None, folder the runner writes to, folder to delete at the end)."""
    if out_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="workbench-sae-"))
        return None, tmp / "sae", tmp
    final = Path(out_dir).expanduser().resolve()
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise ValueError(
            f"out_dir {str(final)!r} exists and is not empty; pick a new folder or pass "
            "overwrite=True to replace it"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    return final, tmp / "sae", tmp


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG (SAE init, buffer shuffles) without disturbing the caller's.

    Gradients are switched on, so training also works when called under ``torch.no_grad()``.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        yield


_QUIET_WARNINGS = (
    r"The training dataset contains fewer samples",
    r"All samples in the training dataset have been exhausted",
    r"To copy construct from a tensor",  # the store re-wraps rows that are already tensors
)


@contextlib.contextmanager
def _quiet_sae_lens(progress: bool) -> Iterator[None]:
    """Silence SAE Lens's expected chatter (override notices, epoch warnings), bars optional."""
    from sae_lens import logger as sae_lens_logger
    from sae_lens.training import activation_scaler, sae_trainer

    level = sae_lens_logger.level
    sae_lens_logger.setLevel(logging.CRITICAL)  # incl. a logged-and-handled view() fallback
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            for message in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            if not progress:
                for module in (sae_trainer, activation_scaler):
                    quiet = functools.partial(module.tqdm, disable=True)
                    stack.enter_context(mock.patch.object(module, "tqdm", quiet))
            yield
    finally:
        sae_lens_logger.setLevel(level)


class _Runner(LanguageModelSAETrainingRunner):
    """SAE Lens's runner without its SIGINT/SIGTERM handlers.

    The stock runner installs process-wide signal handlers around ``trainer.fit()`` (allowed only
    in the main thread, and left in place afterwards); with checkpoints off they would only
    re-raise the interrupt, so Ctrl-C keeps its usual ``KeyboardInterrupt`` here.
    """

    def run_trainer_with_interruption_handling(self, trainer: Any) -> Any:
        return trainer.fit()
