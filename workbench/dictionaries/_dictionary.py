"""The :class:`Dictionary` value: an SAE Lens SAE bound to one hook, and whether it fits a model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE

from workbench import execution
from workbench.fingerprint import state_dict_sha256
from workbench.subjects import Subject

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

    @property
    def normalizes_per_input(self) -> bool:
        """Whether the SAE rescales each input by that input's own statistics when it encodes
        (SAE Lens's ``constant_norm_rescale``: ``x * sqrt(d_in) / |x|``; ``layer_norm``), so its
        pre-activation is not an affine function of the input. SAE Lens folds a constant scale
        (``expected_average_only_in``) and whitening into ``W_enc`` and ``b_dec``, which stay
        affine."""
        return str(self.sae.cfg.normalize_activations) in _PER_INPUT_NORMS

    def pre_activations(self, acts: torch.Tensor) -> torch.Tensor:
        """The SAE's own pre-activations (``..., d_sae``) of ``acts`` (in the layout
        :meth:`encode` takes), differentiable in ``acts``.

        What SAE Lens's ``encode`` passes through ``hook_sae_acts_pre``: after its input
        normalisation and ``b_dec`` subtraction (when ``apply_b_dec_to_input``), before the
        activation function; ``(norm(x) - b_dec) @ W_enc + b_enc`` for ReLU, TopK and JumpReLU
        SAEs (the magnitude path of a gated SAE). The encode stops there.
        """
        box: list[torch.Tensor] = []

        def grab(module: Any, args: Any, out: torch.Tensor) -> None:
            box.append(out)
            raise _Stop

        handle = self.sae.hook_sae_acts_pre.register_forward_hook(grab)
        try:
            self.encode(acts)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not box:
            raise ValueError(
                f"dictionary {self.name!r} ({type(self.sae).__name__}) does not pass its "
                "pre-activations through SAE Lens's hook_sae_acts_pre; use a ReLU, TopK, "
                "JumpReLU or gated SAE"
            )
        return box[0]


class _Stop(Exception):
    """Ends an SAE's encode once its pre-activations are read."""


#: SAE Lens input normalisations that depend on the input itself (applied when encoding)
_PER_INPUT_NORMS = ("constant_norm_rescale", "layer_norm")


def make_dictionary(
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


def hook_trailing_shape(subject: Subject, hook_name: str) -> tuple[int, ...]:
    """Shape of one token's activation at ``hook_name`` (``(d,)`` or ``(n_heads, d_head)``)."""
    if hook_name not in subject.hook_names():
        examples = ", ".join(
            h for h in subject.hook_names() if h.endswith(("resid_post", "resid_pre"))
        )
        raise ValueError(
            f"{subject.name} has no hook {hook_name!r}; pick a dictionary trained on one of its "
            f"hooks, e.g. {examples or ', '.join(subject.hook_names()[:6])} "
            "(see Subject.hook_names())"
        )
    return execution.hook_shape(subject.model, hook_name, subject.name)


def _hook_width(subject: Subject, dictionary: Dictionary) -> int:
    """Width of the hook as this dictionary reads it (heads flattened or one head picked)."""
    shape = hook_trailing_shape(subject, dictionary.hook_name)
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


def load_folder(path: Path, device: torch.device, hook_name: str | None) -> Dictionary:
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
    return make_dictionary(sae, name=path.name, path=path, hook_name=hook_name)
