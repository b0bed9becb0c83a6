"""Fine-tune data: (prompt, completion) pairs, checked, encoded for a subject, and written to disk.

The one encoding every consumer shares (the fine-tune trains on it, the forecast differentiates
it, the behaviour scorers score answers with it): ``prompt + " " + completion`` tokenized by the
subject, with a mask that is true on the completion's tokens only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from workbench._atomic import write_text_atomic
from workbench.fingerprint import texts_sha256
from workbench.subjects import Subject

Pair = tuple[str, str]


def check_pairs(data: Sequence[Pair]) -> list[Pair]:
    """The data as a list of ``(prompt, completion)`` pairs; a ``ValueError`` names a bad item."""
    if isinstance(data, str | bytes):
        raise ValueError(
            "fine-tune data must be a sequence of (prompt, completion) pairs of strings, "
            "not a single string"
        )
    pairs = []
    for i, item in enumerate(data):
        if (
            not isinstance(item, tuple | list)
            or len(item) != 2
            or not all(isinstance(s, str) for s in item)
        ):
            raise ValueError(
                f"fine-tune data item {i} is {item!r:.80}: every item must be a "
                f"(prompt, completion) pair of two strings"
            )
        pairs.append((item[0], item[1]))
    return pairs


def pairs_sha256(data: Sequence[Pair]) -> str:
    """Fingerprint of the data (order matters)."""
    return texts_sha256(f"{p}\x00{c}" for p, c in data)


def unique_pairs(data: Sequence[Pair]) -> tuple[list[Pair], np.ndarray]:
    """Distinct examples (first-seen order) and, for each example, its distinct index."""
    seen: dict[Pair, int] = {}
    inverse = np.empty(len(data), dtype=np.int64)
    for i, pair in enumerate(data):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(
                f"fine-tune example {i} is {pair!r}; every example must be a "
                "(prompt, completion) pair of strings"
            )
        key = (str(pair[0]), str(pair[1]))
        inverse[i] = seen.setdefault(key, len(seen))
    return list(seen), inverse


def join_pair(prompt: str, completion: str) -> str:
    """The text of a pair: ``prompt + " " + completion``, or the two as they are when the prompt
    ends (or the completion starts) with whitespace, as a chat template's rendered prompt does
    (``...<|im_start|>assistant\n``, :func:`workbench.formats.read_finetune_data`)."""
    if not prompt or not completion or prompt[-1].isspace() or completion[0].isspace():
        return prompt + completion
    return f"{prompt} {completion}"


def encode_pairs(subject: Subject, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of each pair's text (:func:`join_pair`) and a mask true on completion tokens."""
    if not pairs:
        raise ValueError("no fine-tune examples: pass at least one (prompt, completion) pair")
    plen = subject.encode([p for p, _ in pairs])[1].sum(1)
    full, full_mask = subject.encode([join_pair(p, c) for p, c in pairs])
    pos = torch.arange(full.shape[1], device=full.device)[None]
    target = full_mask & (pos >= plen[:, None])
    return full, target


def write_jsonl(data: Sequence[Pair], path: str | os.PathLike[str]) -> Path:
    """Write one ``{"prompt", "completion"}`` object per line, atomically; returns the path.

    The file is written beside its destination and renamed into place, so a file that exists
    is complete.
    """
    pairs = check_pairs(data)
    lines = "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs)
    out = write_text_atomic(path, lines, fsync=False)
    return out


def read_jsonl(path: str | os.PathLike[str]) -> list[Pair]:
    """Read a file written by :func:`write_jsonl` (``{"prompt", "completion"}`` per line)."""
    pairs: list[Pair] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            pairs.append((str(obj["prompt"]), str(obj["completion"])))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path}:{n} is not a {{\"prompt\": ..., \"completion\": ...}} object ({err})"
            ) from err
    return pairs
