"""Records from JSONL files, lists of dicts and ``datasets.Dataset`` objects, each with a place.

Every reader in :mod:`workbench.formats` goes through :func:`rows`: it parses a JSONL file line
by line with :func:`json.loads` (so an error can name the 1-based line), or takes records that
are already in memory, and hands back each record with the words that locate it in an error
message (``"data.jsonl line 3"``, ``"record 3"``, ``"dataset row 3"``) and the sha256 that
fingerprints the input.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Source = str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Any
"""A path to a JSONL file, a list of dicts, or a ``datasets.Dataset``."""


@dataclass(frozen=True)
class Rows:
    """Records with their places, where they came from and their fingerprint.

    Attributes:
        items: ``(place, record)`` pairs in input order; ``place`` is how an error names it.
        source: the file's path, ``"<records>"`` (a list) or ``"<datasets.Dataset>"``.
        sha256: of the file's bytes, or of the records' canonical JSON (:func:`records_sha256`).
        path: the file read, if one was.
    """

    items: list[tuple[str, Any]]
    source: str
    sha256: str
    path: Path | None = None


def bad(place: str, field: str | None, problem: str, fix: str) -> ValueError:
    """The one shape of a format error: where, which field, what is wrong, and the fix."""
    where = f"{place}, field {field!r}" if field else place
    return ValueError(f"{where}: {problem}; {fix}")


def records_sha256(records: Sequence[Any]) -> str:
    """sha256 of the records' canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(
        list(records), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_dataset(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets"


def read_jsonl_file(path: str | os.PathLike[str], what: str) -> Rows:
    """Each non-blank line of a JSONL file, parsed; a ``ValueError`` names a bad line.

    ``what`` describes one line's expected object in the fix, e.g. ``'{"prompt", "completion"}'``.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"{p}: no such file; pass the path to a JSONL file (one {what} object per line)"
        )
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{p}: not UTF-8 text (byte {err.start}); save the file as UTF-8 JSONL"
        ) from err
    items: list[tuple[str, Any]] = []
    # split on "\n" only: JSON strings may hold U+2028 and friends, which str.splitlines splits on
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        place = f"{p} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            hint = (
                " (a JSON array or pretty-printed JSON is not JSONL: write one object per line)"
                if n == 1 and (line.lstrip().startswith("[") or line.strip() == "{")
                else ""
            )
            raise bad(
                place, None, f"invalid JSON ({err.msg} at column {err.colno}){hint}",
                f"write one {what} object per line",
            ) from err
        if not isinstance(obj, dict):
            raise bad(place, None, f"a JSON {type(obj).__name__}, not an object",
                      f"write one {what} object per line")
        items.append((place, obj))
    if not items:
        raise ValueError(f"{p}: the file has no records; write one {what} object per line")
    return Rows(items, str(p), hashlib.sha256(data).hexdigest(), p)


def rows(source: Source, what: str) -> Rows:
    """The records of a JSONL path, a list of dicts or a ``datasets.Dataset``, with places."""
    if isinstance(source, str | os.PathLike):
        return read_jsonl_file(source, what)
    if _is_dataset(source):
        if not hasattr(source, "to_list"):  # a DatasetDict, IterableDataset, ...
            raise TypeError(
                f"got a {type(source).__name__}; pass one split as a datasets.Dataset, "
                "e.g. data['train']"
            )
        dataset: Any = source
        records = list(dataset.to_list())
        kind, name = "dataset row", "<datasets.Dataset>"
    elif isinstance(source, Sequence) and not isinstance(source, bytes):
        records, kind, name = list(source), "record", "<records>"
    else:
        raise TypeError(
            f"got a {type(source).__name__}; pass a path to a JSONL file, a list of dicts or a "
            "datasets.Dataset"
        )
    if not records:
        raise ValueError(f"no records in {name}; pass at least one {what} object")
    items: list[tuple[str, Any]] = []
    for i, obj in enumerate(records, 1):
        place = f"{kind} {i}"
        if not isinstance(obj, Mapping):
            raise bad(place, None, f"a {type(obj).__name__}, not a mapping",
                      f"pass {what} dicts")
        items.append((place, obj))
    return Rows(items, name, records_sha256(records))


def text_field(obj: Mapping[str, Any], key: str, place: str, what: str) -> str:
    """A required string field; a ``ValueError`` names the place and the field.

    ``None`` counts as missing: ``datasets`` fills a column a record lacks with ``None``.
    """
    value = obj.get(key)
    if value is None:
        found = ", ".join(repr(k) for k in obj if obj[k] is not None) or "none"
        raise bad(place, key, f"missing (fields found: {found})", f"give every record {what}")
    if not isinstance(value, str):
        raise bad(place, key, f"a {type(value).__name__}, not a string",
                  f"give {key!r} as a JSON string")
    return value
