"""Subjects: the model under study, loaded from one of three places.

A :class:`Subject` bundles a TransformerLens ``HookedTransformer`` with its tokenizer, a name, the
sha256 fingerprint of its weights and the device it lives on. Every other module takes a Subject;
TransformerLens is only touched here and in ``activations`` so a later move to another backend
changes two modules.

``load_subject(spec)`` accepts:

* ``"organism"`` (the default): the embedded model organism (built and cached if missing);
  ``"organism:SEED"`` picks another seed.
* a TransformerLens model name such as ``"gpt2"`` (needs the weights in the Hugging Face cache
  or a reachable hub; offline it fails fast with a message naming the fix), loaded by
  ``workbench._tl_hub``;
* a local Hugging Face model folder (``config.json`` + weights + tokenizer), loaded by
  ``workbench._hf_local``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from workbench._device import resolve_device
from workbench._hf_local import load_local_hf
from workbench._tl_hub import load_transformer_lens
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
        recipe: how a derived subject was made from its base (fine-tune or patch), if it was.
    """

    model: HookedTransformer
    tokenizer: Any
    name: str
    fingerprint: str
    device: torch.device
    source: str
    path: Path | None = None
    recipe: dict[str, Any] | None = None

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
            while bos is not None and len(ids) > 1 and ids[0] == ids[1] == bos:
                ids = ids[1:]  # a text that already starts with BOS gets no second one
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
        path = path.resolve()
        model, tokenizer = load_local_hf(path, dev)
        return make_subject(model, tokenizer, path.name, "local_hf", path)
    model, tokenizer = load_transformer_lens(spec, dev)
    return make_subject(model, tokenizer, spec, "transformer_lens")
