"""Setting up an analysis: the subject and its dictionary, from one call.

Every analysis starts from a model under study and the dictionary (SAE) its features are named
by. :func:`setup` returns both as a :class:`Setup`:

* ``setup(organism="full", seed=0)``: the embedded organism of that seed with its default
  dictionary (:func:`workbench.dictionaries.default_dictionary`); ``organism="small"`` is
  :data:`~workbench.organism.SMALL_CONFIG` (a seconds-long build, for tests and quick runs)
  with the small dictionary recipe :data:`SMALL_DICTIONARY`;
* ``setup(Organism(seed=3, config=...))``: any organism spec, with its default dictionary (or
  ``dictionary=DictionaryRecipe(...)``, or an SAE Lens folder);
* ``setup("gpt2", "gpt2-small-res-jb/blocks.6.hook_resid_pre")``: any model
  :func:`workbench.load_subject` opens (a TransformerLens name or a local Hugging Face folder)
  with an SAE Lens dictionary :func:`workbench.load_dictionary` opens (a folder,
  ``"release/sae_id"`` or ``("release", "sae_id")``), checked to fit the model.

:func:`notebook_setup` is the same from a notebook's ``model`` and ``sae`` parameters
(``model="organism"``: the organism of a size and seed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

import torch

from workbench._device import resolve_device
from workbench.dictionaries import (
    Dictionary,
    DictionaryRecipe,
    default_dictionary,
    load_dictionary,
)
from workbench.organism import SMALL_CONFIG, Organism, OrganismConfig, load_organism
from workbench.subjects import Subject, load_subject, organism_subject

__all__ = [
    "SIZES", "SMALL_DICTIONARY", "Setup", "Size", "notebook_setup", "organism_spec", "setup",
]

Size = Literal["full", "small"]
SIZES: tuple[str, ...] = get_args(Size)

SMALL_DICTIONARY = DictionaryRecipe(expansion=4, k=8, training_tokens=40_000, batch_size=256)
"""The small organism's dictionary: 4x expansion, k = 8, 40k training tokens (seconds)."""

#: a dictionary: an SAE Lens folder, ``"release/sae_id"``, ``("release", "sae_id")``, or (for an
#: organism) the recipe of its default dictionary
DictionarySource = str | os.PathLike[str] | tuple[str, str] | DictionaryRecipe


@dataclass(frozen=True)
class Setup:
    """The subject of an analysis and the dictionary it is read through.

    ``subject, dictionary = wb.setup(...)`` unpacks it. ``dictionary`` is ``None`` only when
    the setup was asked for none (``with_dictionary=False``).
    """

    subject: Subject
    dictionary: Dictionary | None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.subject, self.dictionary))

    def describe(self) -> str:
        """One line: the subject and the dictionary, with fingerprints."""
        s = self.subject
        line = f"{s.name} ({s.fingerprint[:12]}; d_model {s.d_model}, {s.n_layers} blocks)"
        d = self.dictionary
        if d is not None:
            line += (f"; dictionary {d.name} ({d.fingerprint[:12]}): {d.d_sae} features at "
                     f"{d.hook_name}")
        return line


def organism_spec(size: Size = "full", seed: int = 0) -> Organism:
    """The organism of a named size: ``"full"`` (the README's) or ``"small"`` (SMALL_CONFIG)."""
    if size not in SIZES:
        raise ValueError(f"organism size must be one of {SIZES} (got {size!r})")
    return Organism(seed=seed, config=SMALL_CONFIG if size == "small" else OrganismConfig())


def _organism_dictionary(
    spec: Organism, dictionary: DictionarySource | None, subject: Subject, device: torch.device,
    progress: bool,
) -> Dictionary:
    if dictionary is None or isinstance(dictionary, DictionaryRecipe):
        recipe = dictionary
        if recipe is None and spec.config == SMALL_CONFIG:
            recipe = SMALL_DICTIONARY
        return default_dictionary(spec.seed, config=spec.config, recipe=recipe, device=device,
                                  progress=progress)
    return load_dictionary(_source(dictionary), subject, device)


def _source(dictionary: DictionarySource) -> str | Path | tuple[str, str]:
    if isinstance(dictionary, DictionaryRecipe):
        raise ValueError(
            "a DictionaryRecipe trains an organism's default dictionary; for another model pass "
            "an SAE Lens folder, 'release/sae_id' or ('release', 'sae_id')"
        )
    if isinstance(dictionary, tuple | str):
        return dictionary
    return Path(dictionary)


def setup(
    model: Organism | str | os.PathLike[str] | None = None,
    dictionary: DictionarySource | None = None,
    *,
    organism: Size | None = None,
    seed: int | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    with_dictionary: bool = True,
    progress: bool = False,
) -> Setup:
    """The subject and dictionary of an analysis (built and cached on first use for an organism).

    Args:
        model: an :class:`~workbench.organism.Organism` spec, a TransformerLens model name or a
            local Hugging Face folder (what :func:`workbench.load_subject` takes). Leave it out
            for the organism named by ``organism`` and ``seed``.
        dictionary: for an organism, ``None`` (its default dictionary; the small organism's is
            :data:`SMALL_DICTIONARY`), a :class:`~workbench.dictionaries.DictionaryRecipe`, or an
            SAE Lens dictionary; for any other model an SAE Lens dictionary (required): a
            folder, ``"release/sae_id"`` or ``("release", "sae_id")``.
        organism: ``"full"`` (the README's organism; the default) or ``"small"``.
        seed: the organism's seed (default 0).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        dtype: the model's dtype (:func:`workbench.load_subject`; ``"auto"``: bf16 on a GPU,
            fp32 on CPU); the organism is always fp32.
        with_dictionary: ``False`` loads the subject alone (``Setup.dictionary`` is ``None``).
        progress: show progress bars while an organism or dictionary is built.

    Raises:
        ValueError: ``organism``/``seed`` given together with ``model``, an unknown size, or a
            model other than an organism without a dictionary (the message names the fix).
    """
    dev = resolve_device(device)
    if model is not None and (organism is not None or seed is not None):
        raise ValueError(
            "pass either model=... or organism=/seed= (the embedded organism of that size and "
            "seed), not both; for another organism pass Organism(seed=..., config=...)"
        )
    if model is None:
        model = organism_spec(organism or "full", 0 if seed is None else seed)
    if isinstance(model, str) and (model == "organism" or model.startswith("organism:")):
        model = Organism.parse(model)
    if isinstance(model, Organism):
        built = load_organism(seed=model.seed, config=model.config, device=dev,
                              progress=progress)
        subject = organism_subject(built, model)
        if not with_dictionary:
            return Setup(subject, None)
        return Setup(subject, _organism_dictionary(model, dictionary, subject, dev, progress))
    subject = load_subject(os.fspath(model), device=dev, dtype=dtype)
    if not with_dictionary:
        return Setup(subject, None)
    if dictionary is None:
        raise ValueError(
            f"{subject.name} has no default dictionary: pass dictionary= an SAE Lens folder, "
            "'release/sae_id' or ('release', 'sae_id') (e.g. 'gpt2-small-res-jb/"
            "blocks.6.hook_resid_pre'), or with_dictionary=False for the model alone"
        )
    return Setup(subject, load_dictionary(_source(dictionary), subject, dev))


def notebook_setup(
    model: str,
    sae: str,
    *,
    organism: str = "full",
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
) -> Setup:
    """The subject and dictionary a notebook's ``model`` and ``sae`` parameters name.

    ``model="organism"`` is the embedded organism of size ``organism`` and seed ``seed`` (always
    fp32), with its default dictionary, or with ``sae`` (an SAE Lens folder) when given. Any other
    ``model`` is a local Hugging Face folder or a TransformerLens name, loaded in ``dtype``, and
    ``sae`` (an SAE Lens folder or ``release/sae_id``) is required.

    Raises:
        ValueError: another ``model`` without ``sae`` (the message names the fix).
    """
    if model == "organism":
        size = cast(Size, organism)  # a notebook's parameter; setup refuses an unknown size
        return setup(None, sae or None, organism=size, seed=seed, device=device)
    if not sae:
        raise ValueError(
            f"model={model!r} needs sae=: an SAE Lens folder or 'release/sae_id' for it (e.g. "
            "'gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical')"
        )
    return setup(model, sae, device=device, dtype=dtype)
