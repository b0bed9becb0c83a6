"""Building, writing and loading deployment records."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import urllib.parse
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from safetensors.torch import load_file

from workbench import execution
from workbench._atomic import write_text_atomic
from workbench.audits import Audit
from workbench.calibration import Calibration
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.fingerprint import file_sha256, state_dict_sha256
from workbench.forecasts import Forecast
from workbench.record._schema import SCHEMA_VERSION, json_safe, validate_record
from workbench.subjects import Subject

SUBJECT_WEIGHTS = "model.safetensors"
"""The weights file of an organism build folder (TransformerLens state dict)."""
DICTIONARY_WEIGHTS = "sae_weights.safetensors"
"""The weights file of an SAE Lens folder."""
TOP_FEATURES = 20
"""How many of a FeatureSet's strongest features a record keeps by default."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})

SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "access_token", "password"})
"""Keys never stored from a judge's identity (compared lower-cased, with ``-`` read as ``_``,
at any depth): :func:`build_record` drops them, so a record never holds a credential."""

_PACKAGES = {
    "torch": "torch",
    "sae_lens": "sae-lens",
    "workbench": "workbench",
}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _environment(device: Any) -> dict[str, str | None]:
    env: dict[str, str | None] = {"python": platform.python_version()}
    env.update({key: _version(dist) for key, dist in _PACKAGES.items()})
    env.update(execution.backend_versions())  # the model backend's packages (TransformerLens)
    env["device"] = str(device)
    return env


def _file_entry(path: Path) -> dict[str, str]:
    p = path.resolve()
    return {"path": str(p), "sha256": file_sha256(p)}


def safetensors_sha256(path: str | Path) -> str:
    """The state-dict fingerprint (:func:`workbench.fingerprint.state_dict_sha256`) of the
    tensors in a safetensors file."""
    return state_dict_sha256(load_file(str(path), device="cpu"))


def _weights_section(
    folder: Path | None, names: Sequence[str], weights: str, fingerprint: str
) -> tuple[str | None, list[dict[str, str]], bool]:
    """(folder, files, fingerprint_from_files) for a subject or dictionary folder."""
    if folder is None or not Path(folder).is_dir():
        return (str(Path(folder).resolve()) if folder is not None else None), [], False
    folder = Path(folder).resolve()
    files = [_file_entry(folder / n) for n in names if (folder / n).is_file()]
    w = folder / weights
    derivable = w.is_file() and safetensors_sha256(w) == fingerprint
    return str(folder), files, derivable


def _subject_section(subject: Subject) -> dict[str, Any]:
    folder, files, derivable = _weights_section(
        subject.path, [SUBJECT_WEIGHTS], SUBJECT_WEIGHTS, subject.fingerprint
    )
    return {
        "name": subject.name,
        "source": subject.source,
        "fingerprint": subject.fingerprint,
        "path": folder,
        "recipe": json_safe(subject.recipe, "subject.recipe"),
        "files": files,
        "fingerprint_from_files": derivable,
    }


def _dictionary_section(dictionary: Dictionary) -> dict[str, Any]:
    names: list[str] = []
    if dictionary.path is not None and Path(dictionary.path).is_dir():
        folder = Path(dictionary.path)
        names = ["cfg.json", *sorted(p.name for p in folder.glob("*.safetensors"))]
    folder_s, files, derivable = _weights_section(
        dictionary.path, names, DICTIONARY_WEIGHTS, dictionary.fingerprint
    )
    return {
        "name": dictionary.name,
        "hook_name": dictionary.hook_name,
        "fingerprint": dictionary.fingerprint,
        "path": folder_s,
        "files": files,
        "fingerprint_from_files": derivable,
    }


def count_records(path: str | Path) -> int:
    """Non-blank lines of a JSONL file (its records; the lines are not parsed)."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _data_section(data: Mapping[str, str | Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, given in data.items():
        p = Path(given).expanduser()
        if not p.is_file():
            raise ValueError(
                f"data file {name!r} not found at {str(p)!r}: write the JSONL file before "
                "building the record (build_record fingerprints the file as it is on disk)"
            )
        out[str(name)] = {**_file_entry(p), "n_records": count_records(p)}
    return out


def _features_section(features: FeatureSet, top: int) -> dict[str, Any]:
    d = features.to_dict()
    keep = ("indices", "effect", "auroc", "ci_low", "ci_high", "mean_positive", "mean_negative")
    rows = [
        {
            "feature": int(d["indices"][r]),
            "rank": r,
            **{k: d[k][r] for k in keep if k != "indices"},
        }
        for r in range(min(top, len(features)))
    ]
    summary = {k: v for k, v in d.items() if k not in keep}
    return {**summary, "n_features": len(features), "top": rows}


class Identified(Protocol):
    """What ``build_record(judge=...)`` needs of a judge: its ``identity()``
    (:meth:`workbench.judges.Judge.identity`)."""

    def identity(self) -> Mapping[str, Any]: ...


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_secrets(v) for k, v in value.items() if not _is_secret(k)}
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    return value


def _without_credentials(url: Any) -> Any:
    """An endpoint URL without its ``user:password@`` part (if it has one)."""
    if not isinstance(url, str):
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _judge_section(judge: Identified | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The judge's identity as stored: from a Judge's ``identity()`` or an identity dict, with
    every credential dropped (:data:`SECRET_KEYS`, and the ``user:password@`` of its
    ``endpoint``)."""
    if judge is None:
        return None
    if isinstance(judge, Mapping):
        identity: Any = judge
    elif callable(getattr(judge, "identity", None)):
        identity = judge.identity()
        if not isinstance(identity, Mapping):
            raise TypeError(
                f"{type(judge).__name__}.identity() returned a {type(identity).__name__}; a "
                "judge's identity is a dict (kind, name, prompts, thresholds, ...)"
            )
    else:
        raise TypeError(
            f"judge must be a workbench.judges Judge (anything with identity()), its identity() "
            f"dict, or None; got {type(judge).__name__}"
        )
    out: dict[str, Any] = _without_secrets(dict(identity))
    if "endpoint" in out:
        out["endpoint"] = _without_credentials(out["endpoint"])
    return out


def _patch_entry(entry: Mapping[str, Any], i: int) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise TypeError(
            f"patches[{i}] is a {type(entry).__name__}; pass "
            "{'patch': patch.describe(), 'efficacy': {metric: value}}"
        )
    out = dict(entry)
    patch = out.get("patch")
    if patch is not None and hasattr(patch, "describe"):
        out["patch"] = patch.describe()
    return out


def _summary(obj: Any, kind: type) -> Any:
    if obj is None or isinstance(obj, Mapping):
        return obj
    if isinstance(obj, kind):
        return obj.summary()  # type: ignore[attr-defined]
    raise TypeError(f"expected a {kind.__name__} (or its summary() dict), got {type(obj).__name__}")


def _calibrated(
    forecast: Mapping[str, Any] | None, calibration: Calibration | None, subject: Subject
) -> Mapping[str, Any] | None:
    """The forecast summary with ``expected`` from ``calibration`` (checked against it when the
    summary already has one)."""
    if calibration is None:
        return forecast
    if not isinstance(calibration, Calibration):
        raise TypeError(
            f"calibration must be a workbench.calibration.Calibration, got "
            f"{type(calibration).__name__}"
        )
    if forecast is None:
        raise ValueError(
            "a calibration turns a forecast into expected points: pass forecast= with it"
        )
    calibration.check(subject.fingerprint)
    given = forecast.get("expected")
    if isinstance(given, Mapping):
        if given.get("calibration") != calibration.id:
            raise ValueError(
                f"the forecast's expected points come from calibration "
                f"{given.get('calibration')!r}, not {calibration.id!r}, the one passed; pass "
                "the calibration that made them, or neither"
            )
        return forecast
    if calibration.predictor.split(".")[0] != "forecast":
        raise ValueError(
            f"calibration {calibration.id} maps the score {calibration.predictor!r}, not the "
            "forecast's risk; put its Expected.to_dict() in the forecast summary as 'expected'"
        )
    expected = calibration.expect(
        forecast["risk"], str(forecast["method"]), subject=str(forecast["subject"])
    )
    return {**forecast, "expected": expected.to_dict()}


def build_record(
    *,
    title: str,
    subject: Subject,
    dictionary: Dictionary | None = None,
    data: Mapping[str, str | Path] = _EMPTY,
    features: FeatureSet | Mapping[str, Any] | None = None,
    overlaps: Sequence[Mapping[str, Any]] = (),
    forecast: Forecast | Mapping[str, Any] | None = None,
    calibration: Calibration | None = None,
    audit: Audit | Mapping[str, Any] | None = None,
    patches: Sequence[Mapping[str, Any]] = (),
    context_audits: Sequence[Mapping[str, Any]] = (),
    judge: Identified | Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] = _EMPTY,
    notes: str = "",
    top_features: int = TOP_FEATURES,
) -> dict[str, Any]:
    """A deployment record (a JSON-able dict, valid against :func:`schema`).

    Fingerprints the files behind the record: the subject's ``model.safetensors`` when
    ``subject.path`` is a folder holding it (an organism build), the dictionary's ``cfg.json`` and
    ``*.safetensors`` when ``dictionary.path`` is its SAE Lens folder, and each ``data`` file
    (sha256 of the bytes and the number of non-blank lines). Paths are stored absolute.

    Args:
        title: what the analysis is.
        subject, dictionary: the model and the dictionary it was read through.
        data: fine-tune data files (JSONL) by name, e.g.
            ``{"insecure": out_dir / "insecure.jsonl"}``.
        features: a FeatureSet (its ``top_features`` strongest features are kept).
        overlaps: feature-overlap measurements, e.g. ``{"feature": 3, "neighbors": [...]}``.
        forecast, audit: a Forecast / Audit (their ``summary()``), stored as ``forecast`` and
            ``audit``. A calibrated forecast's summary carries ``expected``
            (:meth:`workbench.calibration.Expected.to_dict`, naming its calibration).
        calibration: the :class:`~workbench.calibration.Calibration` of the forecast's risk for
            this subject: the record's ``forecast.expected`` is its ``expect(risk, method)``
            (when the summary already has ``expected``, it must name this calibration).
        patches: ``{"patch": patch (or patch.describe()), "efficacy": {metric: value}}`` each.
        context_audits: ``{framing_a, framing_b, misaligned_a, misaligned_b, gap,
            probe_auroc?, features}`` each.
        judge: the judge whose scores gave the behaviour figures: a
            :class:`workbench.judges.Judge` (anything with ``identity()``), its ``identity()``
            dict, or ``None`` (nothing judged). Stored as ``judge``; credentials are dropped,
            never stored: keys named in :data:`SECRET_KEYS` (``api_key``, ``authorization``,
            ...) at any depth, and the ``user:password@`` of ``endpoint``.
        parameters: the analysis' parameters.
        notes: free text.

    Returns:
        The record; NaN and infinities are stored as null.

    Raises:
        ValueError: a data file is missing, the record breaks the schema (the message names
            the JSON path and the fix), or the calibration is for another subject, another
            score, or another calibration's expected points (or there is no forecast).
        TypeError: a value has no JSON form (the message names its JSON path), or ``judge`` is
            neither a judge, an identity dict nor None.
    """
    if isinstance(features, FeatureSet):
        feats: Any = _features_section(features, top_features)
    else:
        feats = features
    record = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "title": title,
        "notes": notes,
        "parameters": dict(parameters),
        "subject": _subject_section(subject),
        "dictionary": _dictionary_section(dictionary) if dictionary is not None else None,
        "data": _data_section(data),
        "features": feats,
        "overlaps": list(overlaps),
        "forecast": _calibrated(_summary(forecast, Forecast), calibration, subject),
        "audit": _summary(audit, Audit),
        "judge": _judge_section(judge),
        "patches": [_patch_entry(p, i) for i, p in enumerate(patches)],
        "context_audits": list(context_audits),
        "environment": _environment(subject.device),
    }
    safe: dict[str, Any] = json_safe(record)
    validate_record(safe)
    return safe


def write_record(record: Mapping[str, Any], path: str | Path) -> Path:
    """Validate ``record`` against the schema, then write it as JSON atomically.

    The JSON goes to a temporary file in the destination folder (created if missing), which is
    then renamed over ``path`` (``os.replace``): a reader never sees half a record.

    Raises:
        ValueError: the record breaks the schema; the message names the JSON path of the first
            error and the fix. Nothing is written.
    """
    safe = json_safe(record)
    validate_record(safe)
    text = json.dumps(safe, indent=2, allow_nan=False) + "\n"
    dest = write_text_atomic(path, text)
    return dest


def load_record(path: str | Path) -> dict[str, Any]:
    """Read a record written by :func:`write_record` (not validated: :func:`verify` does that),
    as it is in the file: a schema 1.0 record keeps its ``degradation`` section
    (:func:`workbench.record.upgrade_record` gives the current form, with ``audit``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a JSON object.
    """
    p = Path(path).expanduser()
    try:
        loaded = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{str(p)!r} is not a JSON record ({err}); write records with "
            "workbench.record.write_record"
        ) from err
    if not isinstance(loaded, dict):
        raise ValueError(
            f"{str(p)!r} holds a JSON {type(loaded).__name__}, not a record (a JSON object)"
        )
    return loaded
