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

Modules: ``_dictionary`` (the value and the fit check), ``_load``, ``_training``, ``_evaluate``,
``_organism`` (the embedded organism's default dictionary, trained and cached on first use).
"""

from workbench.dictionaries._dictionary import (
    Dictionary,
    DictionaryStats,
    check_compatible,
    hook_trailing_shape,
    make_dictionary,
)
from workbench.dictionaries._evaluate import check_tokens, evaluate_dictionary
from workbench.dictionaries._load import load_dictionary
from workbench.dictionaries._organism import DictionaryRecipe, default_dictionary
from workbench.dictionaries._training import Architecture, train_dictionary

__all__ = [
    "Architecture",
    "Dictionary",
    "DictionaryRecipe",
    "DictionaryStats",
    "check_compatible",
    "check_tokens",
    "default_dictionary",
    "evaluate_dictionary",
    "hook_trailing_shape",
    "load_dictionary",
    "make_dictionary",
    "train_dictionary",
]
