"""Showing a deployment record in a notebook with the JupyterLab record viewer.

The workbench's lab extension renders the MIME type :data:`RECORD_MIME` (the record's JSON) as
readable sections: fingerprints, forecast, audit (measured shifts and behaviour), the judge of
the behaviour figures (when the record names one), feature overlap, patches. A calibrated
forecast (schema 1.2's ``forecast.expected``) reads as :func:`forecast_line`, ``forecast:
expected +12 points (8-16), calibration 1a2b3c4d5e6f``; the judge (schema 1.3's ``judge``) as
:func:`judge_line`, ``judge: openai gpt-4o (https://api.openai.com/v1)``.
:class:`RecordDisplay` wraps a record so that a notebook shows it that way
(``_repr_mimebundle_``); front ends without the extension show its ``text/plain`` one-line
summary (:func:`record_summary`). :func:`display_record` displays one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.calibration import Expected
from workbench.record._build import load_record
from workbench.record._schema import json_safe

RECORD_MIME = "application/vnd.workbench.record+json"
"""The MIME type of a deployment record's JSON (rendered by the workbench lab extension)."""


def _short(fingerprint: Any) -> str:
    if isinstance(fingerprint, str) and len(fingerprint) > 12:
        return f"{fingerprint[:12]}…"
    return str(fingerprint)


def expected_of(record: Mapping[str, Any]) -> Expected | None:
    """The calibrated forecast of a record (``forecast.expected``), or ``None`` when its forecast
    is not calibrated (or the section is malformed: :func:`workbench.record.verify` says how)."""
    forecast = record.get("forecast")
    e = forecast.get("expected") if isinstance(forecast, Mapping) else None
    if not isinstance(e, Mapping):
        return None
    try:
        out = Expected.from_dict(e)
        str(out)  # the numbers are numbers
    except (TypeError, ValueError):
        return None
    return out


def forecast_line(record: Mapping[str, Any]) -> str | None:
    """``forecast: expected +12 points (8-16), calibration 1a2b3c4d5e6f`` for a record whose
    forecast is calibrated, else ``None``."""
    e = expected_of(record)
    return None if e is None else f"forecast: {e}, calibration {e.calibration}"


def judge_line(record: Mapping[str, Any]) -> str | None:
    """``judge: {kind} {name}``, then in brackets its model (when not its name) and endpoint,
    e.g. ``judge: exact organism-exact`` or ``judge: openai gpt-4o
    (https://api.openai.com/v1)``; ``None`` when the record names no judge (nothing judged, or a
    record from before schema 1.3)."""
    judge = record.get("judge")
    if not isinstance(judge, Mapping):
        return None
    kind, name = judge.get("kind", "?"), judge.get("name", "?")
    model, endpoint = judge.get("model"), judge.get("endpoint")
    extra = [f"model {model}"] if model and model != name else []
    extra += [str(endpoint)] if endpoint else []
    return f"judge: {kind} {name}" + (f" ({', '.join(extra)})" if extra else "")


def record_summary(record: Mapping[str, Any]) -> str:
    """One line: title, creation time, subject and dictionary fingerprints, the judge
    (:func:`judge_line`, when the record names one), the forecast (calibrated:
    :func:`forecast_line`; else its risk), how many patches, e.g. ``deployment record 'audit'
    (2025-01-01T00:00:00+00:00): subject small (3fa9c1d2e4b5…), dictionary sae (9e8d…), judge:
    exact organism-exact, forecast risk 0.31, 2 patches``."""
    parts = [f"deployment record {record.get('title', '(untitled)')!r}"]
    if record.get("created"):
        parts[0] += f" ({record['created']})"
    for section in ("subject", "dictionary"):
        s = record.get(section)
        if isinstance(s, Mapping):
            parts.append(f"{section} {s.get('name', '?')} ({_short(s.get('fingerprint'))})")
    judge = judge_line(record)
    if judge is not None:
        parts.append(judge)
    forecast = record.get("forecast")
    line = forecast_line(record)
    if line is not None:
        parts.append(line)
    elif isinstance(forecast, Mapping) and forecast.get("risk") is not None:
        risk = forecast["risk"]
        parts.append(f"forecast risk {risk:.3g}" if isinstance(risk, float) else
                     f"forecast risk {risk}")
    patches = record.get("patches")
    if isinstance(patches, list):
        parts.append(f"{len(patches)} patch{'' if len(patches) == 1 else 'es'}")
    return ", ".join(parts)


class RecordDisplay:
    """A record shown by the lab extension's record viewer (plain text elsewhere).

    Args:
        record: a record dict (:func:`workbench.record.build_record`) or the path of a record
            file (:func:`workbench.record.load_record`).

    Raises:
        TypeError: ``record`` is neither a mapping nor a path.
    """

    def __init__(self, record: Mapping[str, Any] | str | Path) -> None:
        if isinstance(record, str | Path):
            record = load_record(record)
        if not isinstance(record, Mapping):
            raise TypeError(
                f"RecordDisplay takes a record dict or a record file's path, got "
                f"{type(record).__name__}; build one with workbench.record.build_record"
            )
        self.record: dict[str, Any] = json_safe(dict(record))

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> dict[str, Any]:
        """``{RECORD_MIME: the record, "text/plain": its one-line summary}``."""
        return {RECORD_MIME: self.record, "text/plain": record_summary(self.record)}

    def __repr__(self) -> str:
        return record_summary(self.record)


def display_record(record: Mapping[str, Any] | str | Path) -> None:
    """Display a record (a dict or a record file's path) in the notebook (returns nothing, so a
    cell ending with it shows the record once).

    In JupyterLab with the workbench extension it renders as the record viewer (fingerprints,
    judge, forecast, audit, overlap, patches); verification needs the record's file: open the
    ``record.json`` itself from the file browser, or run ``workbench record verify``.
    """
    from IPython.display import display

    display(RecordDisplay(record))
