"""Subjects: the model under study, loaded from one of three places.

A :class:`Subject` bundles a model with its tokenizer, a name, the sha256 fingerprint of its
weights and the device it lives on, and (for the organism) the judge that classifies its answers
exactly. Every other module takes a Subject; the model itself is only run through
:mod:`workbench.execution`.

``load_subject(spec)`` accepts:

* :class:`~workbench.organism.Organism` (``Organism(seed=3, config=SMALL_CONFIG)``) or its
  shorthands ``"organism"`` / ``"organism:SEED"``: the embedded model organism (built and
  cached if missing), carrying its exact judge;
* a TransformerLens model name such as ``"gpt2"`` (needs the weights in the Hugging Face cache
  or a reachable hub; offline it fails fast with a message naming the fix);
* a local Hugging Face model folder (``config.json`` + weights + tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from workbench import execution
from workbench._device import resolve_device, resolve_dtype
from workbench.execution import Model, is_peft_adapter
from workbench.fingerprint import model_sha256
from workbench.organism import BuiltOrganism, Organism, load_organism
from workbench.organism import judge as organism_judge

#: a judge: a :class:`workbench.judges.Judge` (numeric aligned/coherent scores), or a callable
#: ``judge(prompt, answer)`` -> a verdict (``"aligned"``, ``"misaligned"``, ``"incoherent"``, or an
#: enum whose ``.value`` is one of them)
Judge = Callable[[str, str], object] | Any


@dataclass(frozen=True)
class Subject:
    """A model under study.

    Attributes:
        model: the model (a TransformerLens ``HookedTransformer``; never modified in place by
            the workbench).
        tokenizer: a Hugging Face tokenizer (the organism's is a word-level
            ``PreTrainedTokenizerFast``).
        name: human-readable name, e.g. ``"organism-s0"`` or ``"gpt2"``.
        fingerprint: sha256 of the weights (:func:`workbench.fingerprint.model_sha256`).
        device: where the model lives.
        source: ``"organism"``, ``"hub"`` (a model name) or ``"local_hf"`` (a folder).
        path: the folder the weights were read from, if any.
        recipe: how a derived subject was made from its base (fine-tune or patch), if it was.
        judge: the subject's own judge of its answers, if it has one (the organism's is exact).
        organism: the organism spec, for an organism and anything derived from it.
        stop_tokens: tokens that end an answer (kept in it), besides the tokenizer's EOS.
        answer_tokens: the default longest answer sampled (the organism's answers are 3 words
            and an ``end``; a chat model's are sentences).
    """

    model: Model
    tokenizer: Any
    name: str
    fingerprint: str
    device: torch.device
    source: str
    path: Path | None = None
    recipe: dict[str, Any] | None = None
    judge: Judge | None = None
    organism: Organism | None = None
    stop_tokens: tuple[str, ...] = ()
    answer_tokens: int = 128

    # ------------------------------------------------------------------ shape

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return execution.dims(self.model)["d_model"]

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return execution.dims(self.model)["n_layers"]

    @property
    def n_ctx(self) -> int:
        """Longest sequence the model reads."""
        return execution.dims(self.model)["n_ctx"]

    @property
    def d_vocab(self) -> int:
        """Vocabulary size."""
        return execution.dims(self.model)["d_vocab"]

    def hook_names(self) -> list[str]:
        """All hook points of the model, e.g. ``"blocks.0.hook_resid_post"``."""
        return execution.hook_names(self.model)

    def check_hook(self, hook_name: str) -> None:
        """Raise ``ValueError`` naming real hooks when ``hook_name`` is not one of this model's."""
        execution.check_hook(self.model, hook_name, self.name)

    def hook_dim(self, hook_name: str) -> int:
        """Width of the activation at ``hook_name`` (what a dictionary's ``d_in`` must equal)."""
        if hook_name not in self.hook_names():
            raise KeyError(
                f"{self.name} has no hook {hook_name!r}; examples: "
                f"{', '.join(self.hook_names()[:6])} (see Subject.hook_names())"
            )
        return execution.hook_width(self.model, hook_name, self.name)

    # ------------------------------------------------------------------ text

    @property
    def text_tokenizer(self) -> Any:
        """The tokenizer texts are encoded and decoded with."""
        tok = getattr(self.model, "tokenizer", None)
        return tok if tok is not None else self.tokenizer

    def encode(
        self, texts: Sequence[str], length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of ``texts`` (each starting with BOS, right-padded) and a mask of real tokens.

        Ids and mask live on the subject's device.
        """
        rows = self.token_rows(texts)
        n = length or max(len(r) for r in rows)
        if any(len(r) > n for r in rows):
            raise ValueError(f"a text has more than {n} tokens; raise `length`")
        tok = self.text_tokenizer
        bos = tok.bos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else (bos or 0)
        ids_t = torch.full((len(rows), n), int(pad), dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids_t[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return ids_t.to(self.device), mask.to(self.device)

    def token_rows(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, starting with exactly one BOS (no padding)."""
        tok = self.text_tokenizer
        if tok is None:
            raise ValueError(f"{self.name} has no tokenizer; pass token ids instead of texts")
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, not one string; wrap it: [text]")
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
        return rows

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of token ids."""
        return execution.decode(self.text_tokenizer, ids, skip_special_tokens)

    def stop_ids(self) -> tuple[int, ...]:
        """Token ids of :attr:`stop_tokens`."""
        if not self.stop_tokens:
            return ()
        ids = self.text_tokenizer.convert_tokens_to_ids(list(self.stop_tokens))
        return tuple(int(i) for i in ids)

    def derived(self, model: Model, name: str, recipe: dict[str, Any]) -> Subject:
        """A new Subject for a model derived from this one (a fine-tune or a baked patch).

        It keeps the tokenizer, source, judge and organism, and gets its own fingerprint.
        """
        new = make_subject(model, self.tokenizer, name, self.source)
        return replace(
            new,
            recipe=recipe,
            judge=self.judge,
            organism=self.organism,
            stop_tokens=self.stop_tokens,
            answer_tokens=self.answer_tokens,
        )


def make_subject(
    model: Model,
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


def organism_subject(built: BuiltOrganism, spec: Organism) -> Subject:
    """An organism build as a Subject carrying the exact judge (answers end with ``end``)."""
    s = make_subject(built.model, built.tokenizer, built.name, "organism", built.path)
    return replace(s, judge=organism_judge, organism=spec, stop_tokens=("end",), answer_tokens=6)


def _generation_config(path: Path, tokenizer: Any) -> tuple[tuple[str, ...], int | None]:
    """What the folder's ``generation_config.json`` says of answers: their stop tokens (its
    ``eos_token_id`` besides the tokenizer's EOS) and their longest length (``max_new_tokens``).

    Chat models list their end-of-turn tokens there (Qwen 2.5: ``<|im_end|>`` and
    ``<|endoftext|>``; the exported organism: its ``end`` word, and 6 tokens).
    """
    import json

    file = path / "generation_config.json"
    if not file.is_file():
        return (), None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return (), None
    if not isinstance(config, dict):
        return (), None
    longest = config.get("max_new_tokens")
    longest = int(longest) if isinstance(longest, int) and longest > 0 else None
    ids = config.get("eos_token_id")
    if ids is None:
        return (), longest
    ids = [ids] if isinstance(ids, int) else list(ids)
    eos = getattr(tokenizer, "eos_token_id", None)
    stops = tuple(
        str(t) for t in tokenizer.convert_ids_to_tokens([int(i) for i in ids if int(i) != eos])
    )
    return stops, longest


def load_subject(
    spec: str | Path | Organism = "organism",
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    *,
    adapter: str | Path | None = None,
) -> Subject:
    """Load the model under study.

    Args:
        spec: an :class:`~workbench.organism.Organism` (or ``"organism"`` /
            ``"organism:SEED"``), a TransformerLens model name, or a local Hugging Face model
            folder.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"`` (bfloat16 on a GPU, float32 on CPU), ``"float32"``, ``"bfloat16"``,
            ``"float16"`` (or the short ``fp32``/``bf16``/``fp16``). The organism is always
            float32 (it is tiny).
        adapter: a PEFT adapter folder (``adapter_config.json``) merged into a local folder's
            weights: the tuned model of a LoRA fine-tune (see :func:`load_tuned`).

    Raises:
        ValueError: the spec names nothing loadable; the message says what to do.
    """
    dev = resolve_device(device)
    if isinstance(spec, str) and (spec == "organism" or spec.startswith("organism:")):
        spec = Organism.parse(spec)
    if isinstance(spec, Organism):
        if adapter is not None:
            raise ValueError(
                "a PEFT adapter applies to a Hugging Face model folder; export the organism "
                "first (workbench.organism.export_hf) and load the adapter on that folder"
            )
        built = load_organism(seed=spec.seed, config=spec.config, device=dev)
        return organism_subject(built, spec)
    if not isinstance(spec, str | Path):
        raise ValueError(
            f"cannot load a subject from {spec!r}: pass Organism(...), 'organism', a "
            "TransformerLens model name or a local Hugging Face folder"
        )
    torch_dtype = resolve_dtype(dtype, dev)
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path.resolve()
        if is_peft_adapter(path) and not (path / "config.json").is_file():
            raise ValueError(
                f"{str(path)!r} is a PEFT adapter, not a model: load its base model and the "
                f"adapter together, load_subject(BASE_FOLDER, adapter={str(path)!r}), or "
                "load_tuned(base_subject, adapter_folder)"
            )
        adapter_path = Path(adapter).expanduser().resolve() if adapter is not None else None
        model, tokenizer = execution.load_local_model(path, dev, torch_dtype, adapter_path)
        name = path.name if adapter_path is None else f"{path.name}+{adapter_path.name}"
        subject = make_subject(model, tokenizer, name, "local_hf", path)
        stops, longest = _generation_config(path, subject.text_tokenizer)
        subject = replace(subject, stop_tokens=stops)
        if longest is not None:
            subject = replace(subject, answer_tokens=longest)
        if adapter_path is not None:
            recipe = {"kind": "peft_adapter", "adapter": str(adapter_path)}
            subject = replace(subject, recipe=recipe)
        return subject
    if adapter is not None:
        raise ValueError(
            "adapter= needs the base model as a local Hugging Face folder; save the base "
            "with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"
        )
    model, tokenizer = execution.load_hub_model(str(spec), dev, torch_dtype)
    return make_subject(model, tokenizer, str(spec), "hub")


def load_tuned(base: Subject, tuned: str | Path, dtype: str | torch.dtype = "auto") -> Subject:
    """An existing fine-tune of ``base`` as a Subject to audit: a model folder or a PEFT adapter.

    ``tuned`` is a Hugging Face model folder (a full fine-tune) or a PEFT adapter folder (a
    LoRA fine-tune, merged into ``base``'s weights with ``peft``). The result carries ``base``'s
    judge and organism, and a recipe naming where it came from and the base's fingerprint.

    Raises:
        ValueError: the folder is neither, the adapter does not fit ``base``, or the model's
            shape differs from ``base``'s.
    """
    path = Path(tuned).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(
            f"tuned={str(tuned)!r} is not a folder: pass a Hugging Face model folder (a full "
            "fine-tune) or a PEFT adapter folder (adapter_config.json)"
        )
    if is_peft_adapter(path) and not (path / "config.json").is_file():
        if base.path is None or base.source != "local_hf":
            raise ValueError(
                f"the PEFT adapter {str(path)!r} needs its base as a local Hugging Face folder, "
                f"but {base.name} was loaded from {base.source}; for the organism, export it "
                "with workbench.organism.export_hf(...) and load that folder"
            )
        out = load_subject(base.path, base.device, dtype, adapter=path)
        kind = "peft_adapter"
    else:
        out = load_subject(path, base.device, dtype)
        kind = "model_folder"
    if (out.d_model, out.n_layers, out.d_vocab) != (base.d_model, base.n_layers, base.d_vocab):
        raise ValueError(
            f"tuned model {out.name} (d_model {out.d_model}, {out.n_layers} layers, vocab "
            f"{out.d_vocab}) is not a fine-tune of {base.name} (d_model {base.d_model}, "
            f"{base.n_layers} layers, vocab {base.d_vocab})"
        )
    return replace(
        out,
        recipe={"kind": kind, "path": str(path), "base": base.fingerprint},
        judge=base.judge,
        organism=base.organism,
        stop_tokens=out.stop_tokens or base.stop_tokens,
        answer_tokens=out.answer_tokens,
    )
