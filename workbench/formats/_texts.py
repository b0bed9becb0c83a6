"""A corpus of documents from a file: ``{"text": ...}`` JSONL, the pretraining datasets' shape.

Feature statistics (:func:`workbench.collect`) and the texts a dictionary is read on take plain
documents. The Hugging Face ecosystem publishes them one JSON object per line with a ``"text"``
field (the shape of ``datasets.load_dataset("json", ...)`` over a pretraining dump); other
fields are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.formats._rows import Source, bad, rows, text_field

_TEXT = '{"text"}'


@dataclass(frozen=True)
class Texts(Sequence[str]):
    """Documents in file order, with where they came from and their fingerprint.

    A sequence of strings: it goes wherever the workbench takes a list of texts
    (``wb.collect(subject, dictionary, texts)``).

    Attributes:
        texts: the documents.
        source: the file's path (``"<records>"`` for a list of dicts).
        sha256: of the file's bytes (of the records' canonical JSON in memory).
    """

    texts: list[str]
    source: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: Any) -> Any:  # an index gives a str, a slice a list
        return self.texts[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)

    def __repr__(self) -> str:
        return f"Texts({len(self.texts)} documents{', from ' + self.source if self.source else ''})"


def read_texts(source: Source, n: int | None = None) -> Texts:
    """The ``"text"`` field of each record of a JSONL file, a list of dicts or a Dataset.

    Args:
        source: the file (or records).
        n: keep the first ``n`` documents (all when ``None``).

    Raises:
        ValueError: invalid JSON, an empty file, a record without a string ``"text"`` or with an
            empty one, ``n < 1``; the message names the file, the 1-based line, the field and
            the fix.
    """
    if n is not None and n < 1:
        raise ValueError(f"n={n}: keep at least one document (n >= 1), or pass n=None for all")
    data = rows(source, _TEXT)
    texts: list[str] = []
    for place, obj in data.items:
        text = text_field(obj, "text", place, 'a "text" string (one document per line)')
        if not text.strip():
            raise bad(place, "text", "empty", "drop the line or give it the document's text")
        texts.append(text)
        if n is not None and len(texts) >= n:
            break
    return Texts(texts, data.source, data.sha256)
