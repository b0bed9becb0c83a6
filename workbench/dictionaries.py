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

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE

from workbench._device import resolve_device
from workbench._hub import hf_hub_cache, hub_settings, offline_error_text, probe_hub
from workbench._sae_training import Architecture, train_dictionary
from workbench.fingerprint import state_dict_sha256
from workbench.subjects import Subject

__all__ = [
    "Architecture",
    "Dictionary",
    "DictionaryStats",
    "check_compatible",
    "evaluate_dictionary",
    "load_dictionary",
    "train_dictionary",
]

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
    cache_dir = hf_hub_cache()
    access = probe_hub()
    try:
        with hub_settings(cache_dir, cache_only=access.offline):
            sae = SAE.from_pretrained(release, sae_id, device=str(device))
    except OSError as err:  # LocalEntryNotFoundError, OfflineModeIsEnabled, ...
        if not access.offline:
            raise
        raise ValueError(
            offline_error_text(
                f"SAE Lens release {release!r} sae_id {sae_id!r} (Hugging Face repo "
                f"{repo_id!r}, folder {folder!r})",
                access,
                cache_dir,
                repo_id=repo_id,
                include=f"{folder}/*" if folder else None,
                first_load=f"SAE.from_pretrained({release!r}, {sae_id!r})",
                instead="Or save the SAE with sae.save_model(folder) and pass the folder.",
                error=err,
            )
        ) from err
    return _make_dictionary(sae, name=f"{release}/{sae_id}", path=None, hook_name=hook_name)


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
