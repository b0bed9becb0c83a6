"""Contrastive data from files: answer pairs for the log-prob margin, persona contrast sets.

* **Answer pairs**, one JSONL object per line ``{"prompt", "aligned", "misaligned"}``, read as
  the ``(prompt, aligned, misaligned)`` triples that
  :func:`workbench.behaviour.alignment_margin` scores.
* **Contrast sets**, one JSONL object per line, either ``{"positive": text, "negative": text}``
  (a matched pair; either key alone is a single text) or ``{"text": text, "label": label}``
  with label ``1``/``"positive"`` or ``0``/``"negative"``; the shapes may be mixed. By the
  workbench's convention the *positive* texts show the behaviour looked for (a misaligned
  persona) and the *negative* ones its absence, as in :func:`workbench.contrast`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from workbench.formats._rows import Source, bad, rows, text_field

Triple = tuple[str, str, str]
_PAIR = '{"prompt", "aligned", "misaligned"}'
_CONTRAST = '{"positive", "negative"} or {"text", "label"}'
_LABELS: dict[object, str] = {1: "positive", 0: "negative", "positive": "positive",
                              "negative": "negative"}


def read_answer_pairs(source: Source) -> list[Triple]:
    """``(prompt, aligned, misaligned)`` triples from a JSONL file, a list of dicts or a Dataset.

    Pass them to :func:`workbench.behaviour.alignment_margin` (``alignment_margin(subject,
    pairs)``); the margin scores each answer as the text after ``prompt + " "``.

    Raises:
        ValueError: invalid JSON, an empty file, a missing or non-string field; the message
            names the file, the 1-based line, the field and the fix.
    """
    data = rows(source, _PAIR)
    what = 'a "prompt", an "aligned" and a "misaligned" string'
    return [
        (
            text_field(obj, "prompt", place, what),
            text_field(obj, "aligned", place, what),
            text_field(obj, "misaligned", place, what),
        )
        for place, obj in data.items
    ]


@dataclass(frozen=True)
class ContrastSet:
    """Two sets of texts to contrast: ``positive`` (the behaviour looked for) and ``negative``.

    Unpacks as ``(positive, negative)``, so it goes straight where the workbench takes a pair of
    prompt sets::

        wb.contrast(subject, dictionary, cs.positive, cs.negative)   # or *cs
        wb.mean_difference(subject, *cs, hook_name)                  # positive - negative
        wb.derive_directions(tuned, persona=tuple(cs))               # (misaligned, aligned)

    Attributes:
        positive, negative: the texts, in file order.
        source: where they were read from.
        sha256: of the file's bytes (of the records' canonical JSON in memory).
    """

    positive: list[str]
    negative: list[str]
    source: str = ""
    sha256: str = ""

    def __iter__(self) -> Iterator[list[str]]:
        return iter((self.positive, self.negative))

    def __repr__(self) -> str:
        return (
            f"ContrastSet({len(self.positive)} positive, {len(self.negative)} negative"
            f"{', from ' + self.source if self.source else ''})"
        )


def read_contrast_set(source: Source) -> ContrastSet:
    """A :class:`ContrastSet` from a JSONL file, a list of dicts or a ``datasets.Dataset``.

    Raises:
        ValueError: invalid JSON, an empty file, a record of neither shape, a label other than
            1, 0, "positive", "negative", a non-string text, or a side left with no texts; the
            message names the file, the 1-based line, the field and the fix.
    """
    data = rows(source, _CONTRAST)
    sides: dict[str, list[str]] = {"positive": [], "negative": []}
    for place, obj in data.items:
        pair = [k for k in ("positive", "negative") if obj.get(k) is not None]
        if pair:
            if obj.get("text") is not None or obj.get("label") is not None:
                raise bad(place, "text", "the record has 'positive'/'negative' and "
                          "'text'/'label'", "give a record one of the two shapes")
            for k in pair:
                sides[k].append(text_field(obj, k, place, "a positive or negative text"))
            continue
        if obj.get("text") is None and obj.get("label") is None:
            found = ", ".join(repr(k) for k in obj if obj[k] is not None) or "none"
            raise bad(place, "positive", f"the record has neither 'positive'/'negative' nor "
                      f"'text' and 'label' (fields found: {found})",
                      f"write each record as {_CONTRAST}")
        text = text_field(obj, "text", place, 'a "text" string with its "label"')
        label = obj.get("label")
        if label is None:
            raise bad(place, "label", "missing", 'give the text a "label": 1 or "positive", 0 or '
                      '"negative"')
        side = None if isinstance(label, bool) else _LABELS.get(label)
        if side is None:
            raise bad(place, "label", f"{label!r} is not a label read here",
                      'use 1 or "positive", 0 or "negative"')
        sides[side].append(text)
    for side, texts in sides.items():
        if not texts:
            raise ValueError(
                f"{data.source}: no {side} texts; a contrast needs both sides (add "
                f'{{"{side}": ...}} or {{"text": ..., "label": "{side}"}} records)'
            )
    return ContrastSet(sides["positive"], sides["negative"], data.source, data.sha256)
