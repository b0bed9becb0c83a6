"""Fine-tune data in the ecosystem's formats, read into the workbench's ``(prompt, completion)``.

Two record shapes, one per JSONL line (or one per dict of a list, or row of a
``datasets.Dataset``), mixed freely:

* **chat**: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``, the
  format the emergent-misalignment papers publish (e.g. ``insecure.jsonl``);
* **prompt/completion**: ``{"prompt": str, "completion": str}`` (what
  :func:`workbench.data.write_jsonl` writes), or TRL's conversational form with a list of
  messages in each field (read as the chat ``prompt + completion``).

A chat record becomes one pair (:func:`workbench.formats._chat.render_pair`): the completion is
the conversation's **last** assistant turn, the prompt is everything before it, rendered with the
tokenizer's chat template where there is one (else plain: contents joined by ``"\\n"``). So the
loss falls on the last assistant turn only; earlier assistant turns of a multi-turn conversation
are context and are **not** trained. That is what the EM papers' single-turn data needs; train a
multi-turn conversation on every answer by writing one record per answer. Messages after the
last assistant turn are dropped. A string prompt/completion record is already text and is
passed through as it is.

With a chat template the model's text is ``prompt + completion`` joined directly (the template
decides the whitespace); in the plain rendering, as everywhere in the workbench, it is
``prompt + " " + completion`` (:func:`workbench.data.encode_pairs`).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from workbench.formats._chat import Message, check_messages, render_pair, uses_template
from workbench.formats._rows import Source, bad, records_sha256, rows, text_field

Pair = tuple[str, str]
_WHAT = '{"messages": [...]} or {"prompt", "completion"}'


@dataclass(frozen=True, repr=False)
class FinetuneData(Sequence[Pair]):
    """Fine-tune examples read from a file, as ``(prompt, completion)`` pairs, with provenance.

    A sequence of its pairs: pass it wherever the workbench takes fine-tune data
    (``finetune(subject, data, ...)``, ``forecast(...)``), or ``data.pairs``.

    Attributes:
        pairs: one ``(prompt, completion)`` per record, in file order.
        records: the records as read (each line's JSON object, or the given dicts / rows).
        source: the file's path, ``"<records>"`` or ``"<datasets.Dataset>"`` (a split says so).
        sha256: of the file's bytes; for records in memory and for a split, of the records'
            canonical JSON (sorted keys, no spaces, UTF-8).
        chat_template: whether chat records were rendered with the tokenizer's chat template.
        eos_fallbacks: indices of the chat records whose full rendering did not start with
            their prompt's rendering, so their completion is the answer followed by
            ``tokenizer.eos_token`` (empty for any template that renders turns consistently).
    """

    pairs: list[Pair]
    records: list[dict[str, Any]]
    source: str
    sha256: str
    chat_template: bool = False
    eos_fallbacks: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.pairs)

    @overload
    def __getitem__(self, i: int) -> Pair: ...
    @overload
    def __getitem__(self, i: slice) -> list[Pair]: ...
    def __getitem__(self, i: int | slice) -> Pair | list[Pair]:
        return self.pairs[i]

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def __repr__(self) -> str:
        how = "chat template" if self.chat_template else "plain"
        return (
            f"FinetuneData({len(self)} pairs from {self.source}, {how} rendering, "
            f"sha256 {self.sha256[:12]})"
        )

    def split(self, n_holdout: int, seed: int = 0) -> tuple[FinetuneData, FinetuneData]:
        """``(train, holdout)``: ``n_holdout`` records drawn at random (seeded), file order kept.

        Each part's ``sha256`` is of its records' canonical JSON.
        """
        n = len(self)
        if isinstance(n_holdout, bool) or not isinstance(n_holdout, int) or not 0 < n_holdout < n:
            raise ValueError(
                f"n_holdout must be a whole number from 1 to {n - 1} (the data has {n} "
                f"records); got {n_holdout!r}"
            )
        order = random.Random(seed).sample(range(n), n)
        held = sorted(order[:n_holdout])
        kept = sorted(order[n_holdout:])
        return self._subset(kept, "train", seed), self._subset(held, "holdout", seed)

    def _subset(self, idx: list[int], part: str, seed: int) -> FinetuneData:
        records = [self.records[i] for i in idx]
        fell_back = set(self.eos_fallbacks)
        return FinetuneData(
            pairs=[self.pairs[i] for i in idx],
            records=records,
            source=f"{self.source} ({part}: {len(idx)} of {len(self)}, seed {seed})",
            sha256=records_sha256(records),
            chat_template=self.chat_template,
            eos_fallbacks=tuple(j for j, i in enumerate(idx) if i in fell_back),
        )

    def to_dataset(self) -> Any:
        """The pairs as a ``datasets.Dataset`` with string columns ``prompt`` and ``completion``."""
        import datasets

        return datasets.Dataset.from_dict(
            {"prompt": [p for p, _ in self.pairs], "completion": [c for _, c in self.pairs]}
        )


def _example(obj: Mapping[str, Any], place: str) -> Pair | list[Message]:
    """A record as a text pair or as a checked conversation with an assistant turn."""
    messages, prompt, completion = obj.get("messages"), obj.get("prompt"), obj.get("completion")
    if messages is not None:
        if prompt is not None or completion is not None:
            raise bad(place, "messages", "the record has 'messages' and 'prompt'/'completion'",
                      "give a record one of the two shapes")
        conversation = check_messages(messages, place)
        if not any(m["role"] == "assistant" for m in conversation):
            raise bad(place, "messages", "no assistant turn (nothing to train)",
                      'end the conversation with {"role": "assistant", "content": ...}, '
                      "the answer the fine-tune learns")
        return conversation
    if prompt is None and completion is None:
        found = ", ".join(repr(k) for k in obj if obj[k] is not None) or "none"
        raise bad(place, "messages", f"the record has neither 'messages' nor 'prompt' and "
                  f"'completion' (fields found: {found})", f"write each record as {_WHAT}")
    if isinstance(prompt, list) or isinstance(completion, list):  # TRL's conversational form
        head = check_messages(prompt, place, "prompt") if prompt is not None else []
        if completion is None:
            raise bad(place, "completion", "missing", "give the answer turn(s) as 'completion'")
        tail = check_messages(completion, place, "completion")
        if not any(m["role"] == "assistant" for m in tail):
            raise bad(place, "completion", "no assistant turn",
                      'give the answer as [{"role": "assistant", "content": ...}]')
        return head + tail
    what = 'a "prompt" and a "completion" string'
    return text_field(obj, "prompt", place, what), text_field(obj, "completion", place, what)


def _load_with_datasets(path: Path, n: int) -> list[dict[str, Any]] | None:
    """The file's rows as ``datasets`` loads JSON (in memory, in a throwaway cache), or ``None``.

    ``None`` when Arrow cannot type the file (e.g. an extra field that is a number on one line and
    a string on another) or the row count differs from the lines read: the caller then keeps the
    lines it parsed, which hold the same records.
    """
    import datasets

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="workbench-datasets-") as cache:
            loaded = datasets.load_dataset(
                "json", data_files=str(path), split="train", cache_dir=cache,
                keep_in_memory=True,
            )
            out: list[dict[str, Any]] = loaded.to_list()
    except Exception:  # Arrow's typing of a valid file; the parsed lines stand in
        return None
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return out if len(out) == n else None


def read_finetune_data(
    source: Source, tokenizer: Any = None, chat: bool | None = None
) -> FinetuneData:
    """Read fine-tune data (chat JSONL or prompt/completion JSONL) as ``(prompt, completion)``.

    Args:
        source: a JSONL path (loaded with ``datasets.load_dataset("json", ...)``, offline: local
            files only), a list of record dicts, or a ``datasets.Dataset``.
        tokenizer: the subject's tokenizer (``subject.tokenizer``); its chat template renders
            chat records. ``None`` renders them plain.
        chat: ``None`` uses the tokenizer's chat template where it has one, ``False`` never
            does, ``True`` requires one.

    Each line is parsed and checked on its own first, so an error names its line; then the file
    is loaded with ``datasets`` and the pairs are made from its rows (see the module doc for the
    rendering rules).

    Raises:
        ValueError: invalid JSON, an empty file, a record of neither shape, a chat record with
            no assistant turn, a message without role or content or with another role; the
            message names the file, the 1-based line (``record``/``dataset row`` N in memory),
            the field and the fix.
        FileNotFoundError: no such file.
    """
    template = uses_template(tokenizer, chat)
    data = rows(source, _WHAT)
    examples = [_example(obj, place) for place, obj in data.items]
    if data.path is not None:
        loaded = _load_with_datasets(data.path, len(data.items))
        if loaded is not None:
            examples = [
                _example(obj, place) for (place, _), obj in zip(data.items, loaded, strict=True)
            ]
    pairs: list[Pair] = []
    fallbacks: list[int] = []
    for i, ((place, _), ex) in enumerate(zip(data.items, examples, strict=True)):
        if isinstance(ex, tuple):
            pairs.append(ex)
            continue
        prompt, completion, fell_back = render_pair(ex, tokenizer, template, place)
        pairs.append((prompt, completion))
        if fell_back:
            fallbacks.append(i)
    return FinetuneData(
        pairs=pairs,
        records=[dict(obj) for _, obj in data.items],
        source=data.source,
        sha256=data.sha256,
        chat_template=template,
        eos_fallbacks=tuple(fallbacks),
    )
