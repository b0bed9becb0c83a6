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
        tokenizer: a Hugging Face tokenizer (the organism's is a word-level ``PreTrainedTokenizerFast``).
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


def _load_local_hf(path: Path, device: torch.device) -> Subject:
    raise NotImplementedError  # filled in by the subjects helper


def _load_transformer_lens(name: str, device: torch.device) -> Subject:
    raise NotImplementedError  # filled in by the subjects helper
