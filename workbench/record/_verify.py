"""Re-checking a deployment record against its schema and the files it names."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.calibration import Calibration, Expected
from workbench.fingerprint import file_sha256
from workbench.record._build import (
    DICTIONARY_WEIGHTS,
    SUBJECT_WEIGHTS,
    count_records,
    load_record,
    safetensors_sha256,
)
from workbench.record._schema import json_path, record_version, schema_errors, version_notes


@dataclass(frozen=True)
class Check:
    """One thing verified.

    Attributes:
        field: the JSON path of the checked value, e.g. ``"subject.files[0].sha256"``
            (``"$"``: the record as a whole against the schema).
        ok: whether it held.
        expected: what the record says (or what the schema wants).
        actual: what was found.
        message: a sentence saying what was compared, or what is wrong and how to fix it.
    """

    field: str
    ok: bool
    expected: str
    actual: str
    message: str


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`.

    Attributes:
        ok: every check held.
        checks: the checks, schema first.
        skipped: what could not be re-derived and why (not failures), e.g. a dictionary whose
            SAE Lens state dict is not the tensors in its safetensors file.
        notes: how the record was read (not failures), e.g. that a schema 1.0 record's
            ``degradation`` section is the audit.
    """

    ok: bool
    checks: tuple[Check, ...]
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def failures(self) -> list[Check]:
        """The checks that did not hold."""
        return [c for c in self.checks if not c.ok]


def _resolve(recorded: str, base: Path | None, record_dir: Path | None) -> Path:
    """Where a recorded file is now.

    A relative path is taken relative to ``base`` (else the record's folder, else the working
    directory). An absolute path is used as it is without ``base``; with ``base`` (the record was
    moved together with its files) it is looked up under ``base`` by its longest trailing part
    that exists there (``/a/b/sae/cfg.json`` -> ``base/a/b/sae/cfg.json``, ...,
    ``base/sae/cfg.json``, ``base/cfg.json``).
    """
    p = Path(recorded)
    if not p.is_absolute():
        return (base or record_dir or Path.cwd()) / p
    if base is None:
        return p
    parts = p.parts[1:]
    for k in range(len(parts), 0, -1):
        candidate = base.joinpath(*parts[-k:])
        if candidate.exists():
            return candidate
    return base / p.name


def _file_check(field: str, recorded: Any, where: Path) -> Check:
    if not where.is_file():
        return Check(
            field,
            False,
            str(recorded),
            "missing",
            f"file missing: {where} (restore it, or pass base= the folder the files moved to)",
        )
    actual = file_sha256(where)
    ok = actual == recorded
    return Check(
        field,
        ok,
        str(recorded),
        actual,
        f"sha256 of {where} " + ("matches" if ok else "differs: the file changed"),
    )


def _files(section: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    files = section.get("files")
    if not isinstance(files, list):
        return []
    return [
        (i, f)
        for i, f in enumerate(files)
        if isinstance(f, Mapping) and isinstance(f.get("path"), str)
    ]


def _section_checks(
    name: str,
    section: Any,
    weights: str,
    base: Path | None,
    record_dir: Path | None,
    checks: list[Check],
    skipped: list[str],
) -> None:
    if not isinstance(section, Mapping):
        return
    weights_at: Path | None = None
    for i, f in _files(section):
        where = _resolve(f["path"], base, record_dir)
        checks.append(_file_check(json_path([name, "files", i, "sha256"]), f.get("sha256"), where))
        if Path(f["path"]).name == weights:
            weights_at = where
    field = f"{name}.fingerprint"
    recorded = section.get("fingerprint")
    if section.get("fingerprint_from_files") is not True:
        why = (
            f"no {weights} among its files"
            if weights_at is None
            else f"{weights} does not hold the state dict it was computed from "
            "(checked when the record was built)"
        )
        skipped.append(f"{field} not re-derived: {why}")
        return
    if weights_at is None or not weights_at.is_file():
        checks.append(
            Check(
                field,
                False,
                str(recorded),
                "missing",
                f"cannot re-derive the fingerprint: {weights} is missing",
            )
        )
        return
    try:
        actual = safetensors_sha256(weights_at)
    except Exception as err:  # a corrupted header, truncated file, ...
        checks.append(
            Check(
                field,
                False,
                str(recorded),
                "unreadable",
                f"cannot load {weights_at} as safetensors: {err}",
            )
        )
        return
    ok = actual == recorded
    checks.append(
        Check(
            field,
            ok,
            str(recorded),
            actual,
            f"state-dict sha256 of {weights_at} " + ("matches" if ok else "differs"),
        )
    )


def _data_checks(
    data: Any, base: Path | None, record_dir: Path | None, checks: list[Check]
) -> None:
    if not isinstance(data, Mapping):
        return
    for name, entry in data.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
            continue
        where = _resolve(entry["path"], base, record_dir)
        check = _file_check(json_path(["data", name, "sha256"]), entry.get("sha256"), where)
        checks.append(check)
        if check.actual != "missing" and "n_records" in entry:
            n = count_records(where)
            ok = n == entry["n_records"]
            checks.append(
                Check(
                    json_path(["data", name, "n_records"]),
                    ok,
                    str(entry["n_records"]),
                    str(n),
                    f"non-blank lines of {where} " + ("match" if ok else "differ"),
                )
            )


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _find_calibration(
    cal_id: str, subject: Any, base: Path | None, record_dir: Path | None
) -> tuple[Path | None, list[str]]:
    """The file of calibration ``cal_id``: beside the record or under ``base`` (also in their
    ``calibrations/<subject>/``), else in the workbench cache; and where it was looked for."""
    looked: list[str] = []
    folders = [d for d in (base, record_dir) if d is not None]
    for d in folders:
        looked.append(str(d))
        for pattern in (f"*{cal_id}.json", f"calibrations/*/*{cal_id}.json"):
            hits = sorted(d.glob(pattern))
            if hits:
                return hits[0], looked
    if isinstance(subject, str) and subject:
        cache = Calibration.directory(subject)
        looked.append(str(cache))
        hits = sorted(cache.glob(f"*-{cal_id}.json"))
        if hits:
            return hits[0], looked
    return None, looked


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _expected_checks(
    forecast: Any,
    base: Path | None,
    record_dir: Path | None,
    checks: list[Check],
    skipped: list[str],
) -> None:
    """``forecast.expected``: its interval holds its centre, its text reads its numbers, and,
    when the calibration's file is found, the calibration gives the same numbers again."""
    e = forecast.get("expected") if isinstance(forecast, Mapping) else None
    if not isinstance(e, Mapping) or not all(
        _is_number(e.get(k)) for k in ("points", "low", "high", "level")
    ) or not isinstance(e.get("calibration"), str):
        return  # absent, or malformed (the schema check says how)
    exp = Expected.from_dict(e)
    ok = exp.low <= exp.points <= exp.high
    checks.append(Check(
        "forecast.expected", ok, "low <= points <= high",
        f"{exp.low:g} <= {exp.points:g} <= {exp.high:g}",
        "the interval holds its centre" if ok else
        "the interval does not hold its centre: the numbers were edited; recompute them with "
        "Calibration.expect",
    ))  # fmt: skip
    if isinstance(e.get("text"), str):
        ok = e["text"] == str(exp)
        checks.append(Check(
            "forecast.expected.text", ok, str(exp), e["text"],
            "the text reads the numbers" if ok else
            "the text does not read the numbers (points, low, high): one was edited",
        ))  # fmt: skip
    field = "forecast.expected.calibration"
    where, looked = _find_calibration(exp.calibration, forecast.get("subject"), base, record_dir)
    if where is None:
        skipped.append(
            f"{field} not re-derived: calibration {exp.calibration} not found (looked in "
            f"{', '.join(looked)}); copy its file beside the record to check it"
        )
        return
    try:
        cal = Calibration.load(where)
    except (OSError, ValueError) as err:
        checks.append(Check(field, False, exp.calibration, "unreadable", str(err)))
        return
    if cal.id != exp.calibration or cal.subject != forecast.get("subject"):
        checks.append(Check(
            field, False, exp.calibration, cal.id,
            f"{where} holds calibration {cal.id} for subject {cal.subject[:12]}…, not "
            f"{exp.calibration} for the forecast's subject",
        ))  # fmt: skip
        return
    score = exp.score if exp.score is not None else forecast.get("risk")
    method = exp.method or forecast.get("method")
    risk = forecast.get("risk")
    if cal.predictor == "forecast" and _is_number(risk) and not _close(float(score), risk):
        checks.append(Check(
            field, False, f"score {risk}", f"score {score}",
            f"the expected points were computed for score {score}, but the forecast's risk is "
            f"{risk}",
        ))  # fmt: skip
        return
    try:
        again = cal.expect(score, str(method))
    except (TypeError, ValueError) as err:
        checks.append(Check(field, False, str(exp), "not computable", str(err)))
        return
    ok = all(_close(getattr(again, k), getattr(exp, k)) for k in ("points", "low", "high", "level"))
    checks.append(Check(
        field, ok, str(exp), str(again),
        f"calibration {cal.id} ({where}) gives the same expected points for score {score:g} "
        f"({method})" if ok else
        f"calibration {cal.id} ({where}) gives {again.points:g} ({again.low:g} to "
        f"{again.high:g}) for score {score:g} ({method}), the record says {exp.points:g} "
        f"({exp.low:g} to {exp.high:g})",
    ))  # fmt: skip


def verify(
    path_or_record: str | Path | Mapping[str, Any], base: str | Path | None = None
) -> Verification:
    """Check a record against the schema and re-compute every fingerprint from its files.

    Checks: the schema of the version the record declares (each error is a failed check whose
    ``field`` is its JSON path; a schema 1.0 record, whose audit section is ``degradation``, is
    checked against schema 1.0 and a note says so); the
    sha256 of every file in ``subject.files``, ``dictionary.files`` and ``data`` (and each data
    file's record count); ``subject.fingerprint`` and ``dictionary.fingerprint`` re-derived from
    ``model.safetensors`` / ``sae_weights.safetensors`` where the record says they can be
    (``fingerprint_from_files``; otherwise the skip is listed in ``skipped``); a calibrated
    forecast's ``forecast.expected`` (its interval holds its centre, its text reads its numbers,
    and it is re-derived from the calibration's file when that is found beside the record,
    under ``base`` or in the workbench cache; else the skip is listed).

    Args:
        path_or_record: a record file, or a record dict.
        base: where the files are now, when the record was moved together with them (see
            the lookup rule in the module docs); relative recorded paths are taken relative to
            ``base``, else to the record's folder.

    Raises:
        FileNotFoundError, ValueError: the record file is missing or not a JSON object.
    """
    record_dir: Path | None = None
    if isinstance(path_or_record, str | Path):
        record_dir = Path(path_or_record).expanduser().resolve().parent
        record: Any = load_record(path_or_record)
    else:
        record = path_or_record
    base_dir = Path(base).expanduser().resolve() if base is not None else None

    checks: list[Check] = []
    skipped: list[str] = []
    errors = schema_errors(record)
    for e in errors:
        checks.append(Check(e.path, False, e.expected, e.actual, f"{e.message}; fix: {e.fix}"))
    if not errors:
        checks.append(
            Check(
                "$",
                True,
                f"schema {record_version(record)}",
                "valid",
                "the record matches the deployment-record schema",
            )
        )
    if isinstance(record, Mapping):
        _section_checks(
            "subject", record.get("subject"), SUBJECT_WEIGHTS, base_dir, record_dir, checks, skipped
        )
        _section_checks(
            "dictionary",
            record.get("dictionary"),
            DICTIONARY_WEIGHTS,
            base_dir,
            record_dir,
            checks,
            skipped,
        )
        _data_checks(record.get("data"), base_dir, record_dir, checks)
        _expected_checks(record.get("forecast"), base_dir, record_dir, checks, skipped)
    return Verification(
        all(c.ok for c in checks), tuple(checks), tuple(skipped), tuple(version_notes(record))
    )


def _abbrev(value: str, width: int = 16) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def format_verification(v: Verification) -> str:
    """A human-readable table of the checks (failures also show full expected/actual values)."""
    failed = v.failures()
    head = (
        f"record verified: all {len(v.checks)} checks ok"
        if v.ok
        else f"record NOT verified: {len(failed)} of {len(v.checks)} checks failed"
    )
    rows = [("", "field", "expected", "actual", "")] + [
        ("ok" if c.ok else "FAIL", c.field, _abbrev(c.expected), _abbrev(c.actual), c.message)
        for c in v.checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head, ""]
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    if failed:
        lines += ["", "failures:"]
        for c in failed:
            lines += [
                f"  {c.field}: {c.message}",
                f"    expected {c.expected}",
                f"    actual   {c.actual}",
            ]
    if v.skipped:
        lines += ["", "not checked:"] + [f"  {s}" for s in v.skipped]
    if v.notes:
        lines += ["", "notes:"] + [f"  {n}" for n in v.notes]
    return "\n".join(line.rstrip() for line in lines)


def main_verify(path: str | Path, base: str | Path | None = None) -> int:
    """``workbench record verify RECORD``: print the table; 0 when every check holds, else 1."""
    try:
        v = verify(path, base=base)
    except (OSError, ValueError) as err:
        print(f"workbench record verify: {err}", file=sys.stderr)
        return 1
    print(format_verification(v))
    return 0 if v.ok else 1
