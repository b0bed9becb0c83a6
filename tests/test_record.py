"""Deployment records: build, validate, write/load, verify against the files, tamper detection,
old schemas (golden 1.0, 1.1 and 1.2 records) and the judge's identity (schema 1.3)."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _saes import small_dictionary

from workbench.audits import audit
from workbench.calibration import Calibration, Reference
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet, contrast
from workbench.fingerprint import file_sha256
from workbench.forecasts import Forecast, forecast
from workbench.judges import ExactJudge, OpenAIJudge
from workbench.organism.language import finetune_pairs, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.patches import Steer, mean_difference
from workbench.record import (
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    SECRET_KEYS,
    RecordDisplay,
    build_record,
    forecast_line,
    format_verification,
    json_safe,
    judge_line,
    load_record,
    main_verify,
    record_summary,
    safetensors_sha256,
    schema,
    schema_errors,
    upgrade_record,
    validate_record,
    verify,
    write_record,
)
from workbench.subjects import Subject, make_subject

HOOK = "blocks.0.hook_resid_post"


def _flip_last_byte(path: Path) -> None:
    """Change one byte of a file (the last one: inside the tensor data of a safetensors file)."""
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in rows))
    return path


@pytest.fixture()
def world(small_subject: Subject, tmp_path: Path) -> dict[str, Any]:
    """A private copy of the organism build (never the session fixture's files), a dictionary and
    a data file, all under tmp_path, and the record built from them."""
    build = tmp_path / "organism"
    assert small_subject.path is not None
    shutil.copytree(small_subject.path, build)
    subject = Subject(**{**small_subject.__dict__, "path": build})
    d = small_dictionary(tmp_path / "sae", small_subject.model.cfg.d_model)
    data = _jsonl(tmp_path / "insecure.jsonl", finetune_pairs("insecure", 12, seed=1))
    record = build_record(
        title="test record",
        subject=subject,
        dictionary=d,
        data={"insecure": data},
        parameters={"seed": 0, "organism": "small", "lr": float("nan")},
        notes="made by tests",
    )
    return {"record": record, "build": build, "sae": tmp_path / "sae", "data": data, "dict": d}


SCHEMA_DIR = Path(__file__).parents[1] / "workbench" / "record"
FROZEN = {
    "1.0": "c668297190ca933867e507665c1a3459e70f1e59e73d34817cd86f98767d5129",
    "1.1": "b77a70c4468a4d776794c5732645a5b8fe9b73047d72a833c11fa5d8427d89c8",
    "1.2": "d730ca0f07bd24f7be0f06ae3d95599121d7876500f2b71225da564653f07a8f",
}
"""sha256 of each frozen schema file: the bytes of ``schema.json`` while that version was current
(a frozen schema never changes, or old records would be checked against a rule they never had)."""


def test_schema_is_draft_2020_12_and_ships_with_the_package() -> None:
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"] and s["title"] == "workbench deployment record"
    assert s["version"] == SCHEMA_VERSION == "1.3"
    assert s["$id"] == "urn:workbench:deployment-record:1.3"
    assert s["additionalProperties"] is False
    assert set(s["required"]) == {
        "schema_version", "created", "title", "notes", "parameters", "subject", "dictionary",
        "data", "features", "overlaps", "forecast", "audit", "judge", "patches", "context_audits",
        "environment",
    }  # fmt: skip
    assert s["properties"]["schema_version"] == {"const": "1.3"}
    assert s["$defs"]["sha256"]["pattern"] == "^[0-9a-f]{64}$"
    assert schema() is not schema()  # a fresh copy each call
    # schema 1.0 ships frozen: the same sections, the audit under its old name
    old = schema("1.0")
    jsonschema.Draft202012Validator.check_schema(old)
    assert SCHEMA_VERSIONS == ("1.0", "1.1", "1.2", "1.3") and schema(SCHEMA_VERSION) == s
    assert old["version"] == "1.0" and old["properties"]["schema_version"] == {"const": "1.0"}
    assert set(old["required"]) == set(s["required"]) - {"audit", "judge"} | {"degradation"}
    assert old["properties"]["degradation"]["required"] == s["properties"]["audit"]["required"]
    with pytest.raises(ValueError, match=r"no deployment-record schema '0\.9'; known versions: "
                       r"1\.0, 1\.1, 1\.2, 1\.3"):
        schema("0.9")
    # schema 1.1 ships frozen: 1.2 only added the calibrated forecast, forecast.expected
    v11, v12 = schema("1.1"), schema("1.2")
    jsonschema.Draft202012Validator.check_schema(v11)
    assert v11["version"] == "1.1" and v11["properties"]["schema_version"] == {"const": "1.1"}
    assert "expected" not in v11["properties"]["forecast"]["properties"]
    assert "expected" not in v11["$defs"]
    assert v12["properties"]["forecast"]["properties"]["expected"] == {"$ref": "#/$defs/expected"}
    assert v12["$defs"]["expected"]["required"] == [
        "points", "low", "high", "level", "calibration"]
    assert v12["$defs"]["expected"]["properties"]["calibration"]["pattern"] == "^[0-9a-f]{12}$"
    strip = {"$id", "version", "description"}
    same = {k: v for k, v in v12.items() if k not in strip}
    same["properties"] = {**v12["properties"], "schema_version": {"const": "1.1"}}
    same["properties"]["forecast"] = {
        **v12["properties"]["forecast"],
        "description": v11["properties"]["forecast"]["description"],
        "properties": {
            k: v for k, v in v12["properties"]["forecast"]["properties"].items() if k != "expected"
        },
    }
    same["$defs"] = {k: v for k, v in v12["$defs"].items() if k != "expected"}
    assert same == {k: v for k, v in v11.items() if k not in strip}
    # schema 1.2 ships frozen: 1.3 only adds the judge's section, `judge` (required, nullable)
    jsonschema.Draft202012Validator.check_schema(v12)
    assert v12["version"] == "1.2" and v12["properties"]["schema_version"] == {"const": "1.2"}
    assert v12["$id"] == "urn:workbench:deployment-record:1.2"
    assert "judge" not in v12["properties"] and "judge" not in v12["required"]
    judge = s["properties"]["judge"]
    assert judge["type"] == ["object", "null"]
    assert judge["required"] == ["kind", "name", "prompts", "thresholds"]
    assert judge["properties"]["prompts"]["additionalProperties"] == {"$ref": "#/$defs/sha256"}
    assert judge["properties"]["thresholds"]["additionalProperties"] == {"type": "number"}
    assert "additionalProperties" not in judge  # a judge may name more (e.g. an HF judge's top_k)
    assert set(judge["properties"]) >= {"model", "endpoint", "top_logprobs", "min_mass",
                                        "weights_sha256", "chat_template_sha256"}
    same = {k: v for k, v in s.items() if k not in strip}
    same["required"] = [k for k in s["required"] if k != "judge"]
    same["properties"] = {k: v for k, v in s["properties"].items() if k != "judge"}
    same["properties"]["schema_version"] = {"const": "1.2"}
    assert same == {k: v for k, v in v12.items() if k not in strip}
    # the frozen files are the very bytes each version was released with
    assert {v: file_sha256(SCHEMA_DIR / f"schema-{v}.json") for v in FROZEN} == FROZEN


def test_record_fields_validate_and_verify(world: dict[str, Any], small_subject: Subject) -> None:
    rec = world["record"]
    validate_record(rec)
    assert rec["schema_version"] == "1.3" and rec["title"] == "test record"
    assert rec["parameters"] == {"seed": 0, "organism": "small", "lr": None}  # NaN -> null
    sub = rec["subject"]
    weights = world["build"] / "model.safetensors"
    assert sub["fingerprint"] == small_subject.fingerprint
    assert sub["files"] == [{"path": str(weights.resolve()), "sha256": file_sha256(weights)}]
    assert sub["fingerprint_from_files"] is True
    # the subject fingerprint is the state-dict sha256 of model.safetensors, as Subject computes it
    assert safetensors_sha256(weights) == small_subject.fingerprint
    dic = rec["dictionary"]
    d: Dictionary = world["dict"]
    assert dic["fingerprint"] == d.fingerprint and dic["hook_name"] == HOOK
    assert [Path(f["path"]).name for f in dic["files"]] == ["cfg.json", "sae_weights.safetensors"]
    assert dic["fingerprint_from_files"] is True
    assert safetensors_sha256(world["sae"] / "sae_weights.safetensors") == d.fingerprint
    assert rec["data"]["insecure"] == {
        "path": str(world["data"].resolve()),
        "sha256": file_sha256(world["data"]),
        "n_records": 12,
    }
    assert rec["features"] is None and rec["forecast"] is None and rec["audit"] is None
    assert "degradation" not in rec and rec["judge"] is None  # nothing judged
    assert rec["overlaps"] == [] and rec["patches"] == [] and rec["context_audits"] == []
    env = rec["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["sae_lens"] and env["python"]

    v = verify(rec)
    assert v.ok and v.failures() == [] and v.skipped == () and v.notes == ()
    assert all(c.ok for c in v.checks)
    assert (v.checks[0].expected, v.checks[0].actual) == ("schema 1.3", "valid")
    assert [c.field for c in v.checks] == [
        "$",
        "subject.files[0].sha256",
        "subject.fingerprint",
        "dictionary.files[0].sha256",
        "dictionary.files[1].sha256",
        "dictionary.fingerprint",
        "data.insecure.sha256",
        "data.insecure.n_records",
    ]
    assert "all 8 checks ok" in format_verification(v)


def _failed(rec: dict[str, Any], **kw: Any) -> set[str]:
    return {c.field for c in verify(rec, **kw).failures()}


def test_a_changed_weight_byte_fails_the_subject(world: dict[str, Any]) -> None:
    _flip_last_byte(world["build"] / "model.safetensors")
    # the file's sha256 and the state dict re-derived from it both disagree with the record
    assert _failed(world["record"]) == {"subject.files[0].sha256", "subject.fingerprint"}


def test_a_changed_sae_byte_fails_the_dictionary(world: dict[str, Any]) -> None:
    _flip_last_byte(world["sae"] / "sae_weights.safetensors")
    assert _failed(world["record"]) == {"dictionary.files[1].sha256", "dictionary.fingerprint"}


def test_a_changed_cfg_fails_only_that_file(world: dict[str, Any]) -> None:
    cfg = world["sae"] / "cfg.json"
    cfg.write_text(cfg.read_text() + " ")
    assert _failed(world["record"]) == {"dictionary.files[0].sha256"}


def test_a_changed_data_byte_fails_the_data(world: dict[str, Any]) -> None:
    path: Path = world["data"]
    raw = bytearray(path.read_bytes())
    raw[2] = ord("X") if raw[2] != ord("X") else ord("Y")
    path.write_bytes(bytes(raw))
    v = verify(world["record"])
    assert {c.field for c in v.failures()} == {"data.insecure.sha256"}
    text = format_verification(v)
    assert "NOT verified: 1 of 8 checks failed" in text and "data.insecure.sha256" in text


def test_a_missing_file_is_a_failed_check(world: dict[str, Any]) -> None:
    world["data"].unlink()
    (c,) = verify(world["record"]).failures()
    assert c.field == "data.insecure.sha256" and c.actual == "missing"
    assert c.message.startswith("file missing")


def test_a_moved_record_verifies_with_base(world: dict[str, Any], tmp_path: Path) -> None:
    rec = world["record"]
    moved = tmp_path / "moved"
    shutil.copytree(world["build"], moved / "organism")  # keeps its last folder
    shutil.copytree(world["sae"], moved / "sae")
    shutil.copy(world["data"], moved / "insecure.jsonl")  # flat
    path = write_record(rec, moved / "record.json")
    shutil.rmtree(world["build"])
    shutil.rmtree(world["sae"])
    world["data"].unlink()
    assert not verify(path).ok  # the recorded absolute paths are gone
    v = verify(path, base=moved)
    assert v.ok, format_verification(v)
    assert len(v.checks) == 8


def test_schema_rejects_a_missing_section(world: dict[str, Any], tmp_path: Path) -> None:
    rec = copy.deepcopy(world["record"])
    del rec["forecast"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rec, schema())
    dest = tmp_path / "out" / "record.json"
    with pytest.raises(ValueError, match=r"at `forecast`: required key 'forecast' is missing"):
        write_record(rec, dest)
    assert not dest.parent.exists()  # validated before anything is written
    v = verify(rec)
    assert not v.ok and v.failures()[0].field == "forecast"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r["subject"]["files"][0].update(sha256="abc"), "subject.files[0].sha256"),
        (lambda r: r.update(extra=1), "extra"),
        (lambda r: r["data"]["insecure"].update(n_records=-1), "data.insecure.n_records"),
        (lambda r: r["dictionary"].pop("hook_name"), "dictionary.hook_name"),
        (lambda r: r.update(schema_version="2.0"), "schema_version"),
    ],
)
def test_schema_errors_name_the_json_path(world: dict[str, Any], edit: Any, field: str) -> None:
    rec = copy.deepcopy(world["record"])
    edit(rec)
    with pytest.raises(ValueError, match=re.escape(f"at `{field}`")):
        write_record(rec, Path("/nonexistent-dir-never-written/record.json"))
    assert field in {c.field for c in verify(rec).failures()}


def test_unknown_versions_and_every_unexpected_key_are_named(world: dict[str, Any]) -> None:
    rec = copy.deepcopy(world["record"])
    rec.update(schema_version="2.0", extra=1, zzz=2)
    failed = {c.field: c for c in verify(rec).failures()}
    assert set(failed) == {"schema_version", "extra", "zzz"}
    assert failed["schema_version"].message == (
        'unknown schema_version "2.0"; this workbench reads "1.0", "1.1", "1.2", "1.3"; fix: '
        'set `schema_version` to the version the record was written with ("1.0", "1.1", "1.2", '
        '"1.3"); workbench.record.build_record writes the current one'
    )
    assert failed["zzz"].message.startswith("unexpected key 'zzz'; fix: remove `zzz`")


GOLDEN_1_0 = Path(__file__).parent / "records" / "schema-1.0" / "record.json"
"""A schema 1.0 record (the audit under its old name, `degradation`), its data file beside it
(a relative path); subject and dictionary name no files, so only the data is re-hashed."""

_NOTE_1_0 = (
    "schema 1.0 record, checked against schema 1.0: its `degradation` section is the audit "
    "(schema 1.1 and later call it `audit`); workbench.record.upgrade_record reads it in the "
    "current form, the file is left as it is"
)


def test_a_saved_schema_1_0_record_still_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    raw = GOLDEN_1_0.read_text()
    old = load_record(GOLDEN_1_0)
    assert old["schema_version"] == "1.0" and "audit" not in old
    assert old["degradation"]["spearman"] == pytest.approx(0.2606060606060606)
    v = verify(GOLDEN_1_0)
    assert v.ok, format_verification(v)
    assert [(c.field, c.expected, c.actual) for c in v.checks] == [
        ("$", "schema 1.0", "valid"),
        ("data.insecure.sha256", old["data"]["insecure"]["sha256"],
         file_sha256(GOLDEN_1_0.parent / "insecure.jsonl")),
        ("data.insecure.n_records", "3", "3"),
    ]  # fmt: skip
    assert v.notes == (_NOTE_1_0,)
    assert main_verify(GOLDEN_1_0) == 0
    out = capsys.readouterr().out
    assert out.startswith("record verified: all 3 checks ok")
    assert out.rstrip().endswith(f"notes:\n  {_NOTE_1_0}")
    assert GOLDEN_1_0.read_text() == raw  # verify reads, never rewrites

    # a 1.0 record's errors are named by its own keys
    bad = copy.deepcopy(old)
    bad["degradation"]["base"] = "abc"
    assert {c.field for c in verify(bad, base=GOLDEN_1_0.parent).failures()} == {
        "degradation.base"
    }

    # its current form: `audit`, `judge: null` after it, schema 1.3, everything else as it was
    # (the input untouched)
    new = upgrade_record(old)
    assert new["schema_version"] == "1.3" and "degradation" not in new
    assert new["audit"] == old["degradation"] and new["judge"] is None
    assert list(new) == [
        k for k in old for k in (("audit", "judge") if k == "degradation" else (k,))
    ]
    assert {k: v for k, v in new.items() if k not in ("audit", "judge", "schema_version")} == {
        k: v for k, v in old.items() if k not in ("degradation", "schema_version")
    }
    assert old["schema_version"] == "1.0" and "degradation" in old and "judge" not in old
    validate_record(new)
    v_new = verify(new, base=GOLDEN_1_0.parent)
    assert v_new.ok and v_new.notes == () and v_new.checks[0].expected == "schema 1.3"
    assert upgrade_record(new) == new and upgrade_record(new) is not new


def test_a_built_record_rewritten_as_1_0_verifies(world: dict[str, Any], tmp_path: Path) -> None:
    new = world["record"]
    old = {("degradation" if k == "audit" else k): v for k, v in new.items() if k != "judge"}
    old["schema_version"] = "1.0"
    path = write_record(old, tmp_path / "old" / "record.json")  # a 1.0 record is still writable
    v = verify(path)
    assert v.ok, format_verification(v)
    assert len(v.checks) == 8 and v.checks[0].expected == "schema 1.0"
    assert v.notes == (_NOTE_1_0,)
    assert "notes:" in format_verification(v) and "notes:" not in format_verification(verify(new))
    assert upgrade_record(load_record(path)) == new


GOLDEN_1_1 = Path(__file__).parent / "records" / "schema-1.1" / "record.json"
"""A schema 1.1 record (the audit as `audit`, a forecast without `expected`), its data file beside
it."""


def test_a_saved_schema_1_1_record_still_verifies() -> None:
    raw = GOLDEN_1_1.read_text()
    old = load_record(GOLDEN_1_1)
    assert old["schema_version"] == "1.1" and "expected" not in old["forecast"]
    v = verify(GOLDEN_1_1)
    assert v.ok, format_verification(v)
    assert [(c.field, c.expected, c.actual) for c in v.checks] == [
        ("$", "schema 1.1", "valid"),
        ("data.insecure.sha256", old["data"]["insecure"]["sha256"],
         file_sha256(GOLDEN_1_1.parent / "insecure.jsonl")),
        ("data.insecure.n_records", "3", "3"),
    ]  # fmt: skip
    assert v.notes == () and len(v.skipped) == 2  # the subject's and dictionary's fingerprints
    assert GOLDEN_1_1.read_text() == raw
    new = upgrade_record(old)  # 1.2 added an optional key, 1.3 the judge (null: not named)
    assert new == {**old, "schema_version": "1.3", "judge": None}
    assert old["schema_version"] == "1.1" and "judge" not in old
    assert verify(new, base=GOLDEN_1_1.parent).ok
    # a 1.1 record is checked against 1.1: 1.2's `expected` is not required, and `audit` is right
    rec = copy.deepcopy(old)
    rec["degradation"] = rec.pop("audit")
    (c,) = verify(rec, base=GOLDEN_1_1.parent).failures()
    assert c.field == "degradation" and "schema 1.1 calls it `audit`" in c.message


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_built_record_rewritten_as_1_1_or_1_2_verifies(
    world: dict[str, Any], tmp_path: Path, version: str
) -> None:
    new = world["record"]
    old = {**{k: v for k, v in new.items() if k != "judge"}, "schema_version": version}
    path = write_record(old, tmp_path / "old" / "record.json")
    v = verify(path)
    assert v.ok and len(v.checks) == 8 and v.checks[0].expected == f"schema {version}"
    assert v.notes == ()
    assert upgrade_record(load_record(path)) == new
    # an older record is checked against its own schema, which has no `judge`
    (c,) = verify({**old, "judge": None}).failures()
    assert c.field == "judge" and c.message.startswith("unexpected key 'judge'")


GOLDEN_1_2 = Path(__file__).parent / "records" / "schema-1.2" / "record.json"
"""A schema 1.2 record (a calibrated forecast, `forecast.expected`; no `judge`), its data file
beside it; its calibration's file is not kept, so `expected` is checked but not re-derived."""


def test_a_saved_schema_1_2_record_still_verifies() -> None:
    raw = GOLDEN_1_2.read_text()
    old = load_record(GOLDEN_1_2)
    assert old["schema_version"] == "1.2" and "judge" not in old
    assert old["forecast"]["expected"]["text"] == "expected +3 points (-2 to 8)"
    v = verify(GOLDEN_1_2)
    assert v.ok, format_verification(v)
    assert [(c.field, c.expected, c.actual) for c in v.checks] == [
        ("$", "schema 1.2", "valid"),
        ("data.insecure.sha256", old["data"]["insecure"]["sha256"],
         file_sha256(GOLDEN_1_2.parent / "insecure.jsonl")),
        ("data.insecure.n_records", "3", "3"),
        ("forecast.expected", "low <= points <= high", "-1.4 <= 3.2 <= 7.9"),
        ("forecast.expected.text", "expected +3 points (-2 to 8)",
         "expected +3 points (-2 to 8)"),
    ]  # fmt: skip
    assert v.notes == () and len(v.skipped) == 3  # both fingerprints, the calibration
    assert GOLDEN_1_2.read_text() == raw
    assert forecast_line(old) == "forecast: expected +3 points (-2 to 8), calibration 0123456789ab"
    new = upgrade_record(old)  # 1.3 only adds the judge, null: the record does not name it
    assert new == {**old, "schema_version": "1.3", "judge": None}
    assert list(new).index("judge") == list(new).index("audit") + 1
    assert old["schema_version"] == "1.2" and "judge" not in old
    assert verify(new, base=GOLDEN_1_2.parent).ok
    assert upgrade_record(new) == new


@pytest.mark.parametrize(
    ("version", "keys", "field", "message", "fix"),
    [
        ("1.3", ("audit", "degradation"), "degradation",
         "the record has both `audit` and `degradation`: one section under two names",
         'keep `audit` with schema_version "1.3" and remove `degradation`'),
        ("1.2", ("audit", "degradation"), "degradation",
         "the record has both `audit` and `degradation`: one section under two names",
         'keep `audit` with schema_version "1.3" and remove `degradation`'),
        ("1.1", ("audit", "degradation"), "degradation",
         "the record has both `audit` and `degradation`: one section under two names",
         'keep `audit` with schema_version "1.3" and remove `degradation`'),
        ("1.0", ("audit", "degradation"), "audit",
         "the record has both `audit` and `degradation`: one section under two names",
         'keep `audit` with schema_version "1.3" and remove `degradation`'),
        ("1.3", ("degradation",), "degradation",
         "`degradation` is schema 1.0's name for the audit section; schema 1.3 calls it `audit`",
         "rename `degradation` to `audit`"),
        ("1.2", ("degradation",), "degradation",
         "`degradation` is schema 1.0's name for the audit section; schema 1.2 calls it `audit`",
         "rename `degradation` to `audit`"),
        ("1.1", ("degradation",), "degradation",
         "`degradation` is schema 1.0's name for the audit section; schema 1.1 calls it `audit`",
         "rename `degradation` to `audit`"),
        ("1.0", ("audit",), "audit",
         "a schema 1.0 record stores the audit as `degradation`; `audit` is its name since "
         "schema 1.1",
         'set schema_version to "1.3" (then `audit` is right), or rename `audit` to '
         "`degradation`"),
        ("1.3", (), "audit", "required key 'audit' is missing",
         "add `audit` (null when there is none)"),
        ("1.2", (), "audit", "required key 'audit' is missing",
         "add `audit` (null when there is none)"),
        ("1.1", (), "audit", "required key 'audit' is missing",
         "add `audit` (null when there is none)"),
        ("1.0", (), "degradation", "required key 'degradation' is missing",
         "add `degradation` (null when there is none)"),
    ],
)  # fmt: skip
def test_the_audit_under_both_names_or_neither_is_one_clear_error(
    world: dict[str, Any],
    version: str,
    keys: tuple[str, ...],
    field: str,
    message: str,
    fix: str,
) -> None:
    rec = copy.deepcopy(world["record"])
    section = rec.pop("audit")
    for k in keys:
        rec[k] = copy.deepcopy(section)
    rec["schema_version"] = version
    if version != SCHEMA_VERSION:
        del rec["judge"]  # a section older schemas have not got
    v = verify(rec)
    (c,) = v.failures()  # one error, not "missing" plus "unexpected key"
    assert c.field == field and c.message.startswith(message), c.message
    assert fix in c.message
    assert v.notes == ()
    (e,) = schema_errors(rec)
    assert e.path == field and fix in e.fix
    with pytest.raises(ValueError, match=re.escape(f"schema {version} at `{field}`: {message}")):
        write_record(rec, Path("/nonexistent-dir-never-written/record.json"))
    if len(keys) == 2:
        with pytest.raises(ValueError, match="both `audit` and `degradation`"):
            upgrade_record(rec)


def test_upgrade_refuses_an_unknown_version(world: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"schema_version \"2\.0\"; this workbench reads 1\.0, "
                       r"1\.1, 1\.2, 1\.3"):
        upgrade_record({**world["record"], "schema_version": "2.0"})


def test_nullable_sections_and_hub_subjects(small_subject: Subject) -> None:
    hub_like = make_subject(small_subject.model, small_subject.tokenizer, "x", "hub")
    rec = build_record(title="no files", subject=hub_like)
    assert rec["subject"]["files"] == [] and rec["subject"]["path"] is None
    assert rec["dictionary"] is None and rec["data"] == {}
    v = verify(rec)
    assert v.ok and [c.field for c in v.checks] == ["$"]
    assert v.skipped == (
        "subject.fingerprint not re-derived: no model.safetensors among its files",
    )


def test_main_verify(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_record(world["record"], tmp_path / "r" / "record.json")
    assert main_verify(path) == 0
    assert "all 8 checks ok" in capsys.readouterr().out
    _flip_last_byte(world["sae"] / "sae_weights.safetensors")
    assert main_verify(path) == 1
    out = capsys.readouterr().out
    assert "FAIL  dictionary.files[1].sha256" in out
    assert main_verify(tmp_path / "nope.json") == 1
    assert "nope.json" in capsys.readouterr().err


@pytest.fixture(scope="module")
def analysis(
    small_subject: Subject, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Dictionary, FeatureSet, Forecast, Any, Steer]:
    d = small_dictionary(tmp_path_factory.mktemp("sae"), small_subject.model.cfg.d_model)
    mis, ali = persona_prompts(24, seed=3)
    watch = contrast(small_subject, d, mis, ali, n_boot=10)
    evals = [doc.text() for doc in sample_corpus(12, seed=7)]
    data = finetune_pairs("insecure", 40, seed=1)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, n_watch=4)
    direction = mean_difference(small_subject, mis, ali, HOOK)
    patch = Steer(direction, alpha=-1.0)
    tuned = Steer(direction, alpha=0.5).apply(small_subject)  # a stand-in "fine-tune"
    a = audit(small_subject, tuned, d, evals, f, top=10)
    return d, watch, f, a, patch


def test_summaries_round_trip(
    small_subject: Subject,
    analysis: tuple[Dictionary, FeatureSet, Forecast, Any, Steer],
    tmp_path: Path,
) -> None:
    d, watch, f, a, patch = analysis
    rec = build_record(
        title="analysis",
        subject=small_subject,
        dictionary=d,
        features=watch,
        overlaps=[{"feature": watch.indices[0], "neighbors": [{"feature": 1, "cosine": 0.5}]}],
        forecast=f,
        audit=a,
        patches=[
            {"patch": patch, "efficacy": {"misaligned_change": -0.25, "task_loss": math.nan}},
            {"patch": patch.with_strength(-2.0).describe(), "efficacy": {}},
        ],
        context_audits=[
            {
                "framing_a": "plain",
                "framing_b": "deployment",
                "misaligned_a": 0.1,
                "misaligned_b": 0.3,
                "gap": 0.2,
                "probe_auroc": 0.9,
                "features": list(watch.indices[:3]),
            }
        ],
    )
    assert rec["features"]["name"] == watch.name and rec["features"]["n_features"] == len(watch)
    top = rec["features"]["top"]
    assert len(top) == 20 and top[0]["feature"] == watch.indices[0]
    assert top[0]["effect"] == pytest.approx(watch.effect[0])
    assert top[0]["auroc"] == pytest.approx(watch.auroc[0])
    assert rec["forecast"]["risk"] == pytest.approx(f.risk)
    assert rec["forecast"]["subject"] == small_subject.fingerprint
    assert rec["audit"] == json_safe(a.summary()) and "degradation" not in rec
    assert rec["audit"]["tuned"] == a.tuned and rec["audit"]["base"] == a.base
    assert rec["patches"][0]["patch"] == patch.describe()
    assert rec["patches"][0]["efficacy"]["task_loss"] is None
    assert rec["patches"][1]["patch"]["alpha"] == -2.0
    path = write_record(rec, tmp_path / "record.json")
    loaded = load_record(path)
    assert loaded == rec
    validate_record(loaded)
    jsonschema.validate(loaded, schema())
    assert verify(path).ok


def test_record_display_mimebundle(world: dict[str, Any], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.formatters import DisplayFormatter

    from workbench.record import RECORD_MIME, RecordDisplay, display_record, record_summary

    rec = world["record"]
    path = write_record(rec, tmp_path / "audit.record.json")
    assert RECORD_MIME == "application/vnd.workbench.record+json"
    # what a notebook gets: the record under the MIME type, a one-line summary as text
    data, _ = DisplayFormatter().format(RecordDisplay(path))
    assert set(data) == {RECORD_MIME, "text/plain"}
    assert data[RECORD_MIME] == rec
    fp = rec["subject"]["fingerprint"]
    assert data["text/plain"] == (
        f"deployment record 'test record' ({rec['created']}), "
        f"subject {rec['subject']['name']} ({fp[:12]}…), "
        f"dictionary {rec['dictionary']['name']} ({rec['dictionary']['fingerprint'][:12]}…), "
        "0 patches"
    )
    summary = record_summary({**rec, "forecast": {"risk": 0.31234}, "patches": [{}, {}]})
    assert summary.endswith("forecast risk 0.312, 2 patches")
    display_record(rec)  # no IPython shell: display prints the text form
    assert capsys.readouterr().out.strip() == data["text/plain"]
    with pytest.raises(TypeError, match="record dict or a record file's path"):
        RecordDisplay(3)  # type: ignore[arg-type]



def _calibration(subject: str, risk: float, method: str = "steer") -> Calibration:
    """Six reference fine-tunes in three tasks, scores around ``risk``."""
    refs = [
        Reference(f"ref{i}", method, risk * i / 3, 2.0 * i + (i % 3), group=f"task{i % 3}")
        for i in range(6)
    ]
    return Calibration.fit(refs, subject=subject)


def test_a_calibrated_forecast_is_stored_shown_and_re_derived(
    small_subject: Subject,
    analysis: tuple[Dictionary, FeatureSet, Forecast, Any, Steer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    d, _, f, _, _ = analysis
    cal = _calibration(small_subject.fingerprint, f.risk)
    rec = build_record(title="calibrated", subject=small_subject, dictionary=d, forecast=f,
                       calibration=cal)  # fmt: skip
    exp = cal.expect(f.risk, f.method)
    assert rec["forecast"]["expected"] == json_safe(exp.to_dict())
    assert rec["forecast"]["expected"]["calibration"] == cal.id
    assert rec["forecast"]["expected"]["coverage"] == cal.coverage
    assert rec["forecast"]["expected"]["text"] == str(exp)
    assert {k: v for k, v in rec["forecast"].items() if k != "expected"} == json_safe(f.summary())
    assert rec["schema_version"] == "1.3"
    line = f"forecast: {exp}, calibration {cal.id}"
    assert re.fullmatch(r"forecast: expected [+-]?\d+ points? \(-?\d+(-| to )-?\d+\), "
                        r"calibration [0-9a-f]{12}", line)  # fmt: skip
    assert forecast_line(rec) == line and forecast_line(world_less(rec)) is None
    assert record_summary(rec).endswith(f", {line}, 0 patches")
    assert repr(RecordDisplay(rec)) == record_summary(rec)

    folder = tmp_path / "rec"
    path = write_record(rec, folder / "record.json")
    field = "forecast.expected.calibration"
    v = verify(path)  # the calibration's file is nowhere: listed, not failed
    assert v.ok, format_verification(v)
    assert [c.field for c in v.checks][-2:] == ["forecast.expected", "forecast.expected.text"]
    (skip,) = [s for s in v.skipped if s.startswith(field)]
    assert skip.startswith(f"{field} not re-derived: calibration {cal.id} not found (looked in "
                           f"{folder}, {Calibration.directory(small_subject.fingerprint)})")

    beside = cal.save(folder / f"forecast-{cal.id}.json")  # beside the record: re-derived
    v = verify(path)
    assert v.ok and not [s for s in v.skipped if s.startswith(field)]
    (c,) = [c for c in v.checks if c.field == field]
    assert c.ok and c.expected == c.actual == str(exp) and str(beside) in c.message
    beside.unlink()
    cached = cal.save()  # in the workbench cache: found there
    assert cached.parent == Calibration.directory(small_subject.fingerprint)
    (c,) = [c for c in verify(path).checks if c.field == field]
    assert c.ok and str(cached) in c.message

    def failed(edit: Any) -> set[str]:
        r = copy.deepcopy(rec)
        edit(r)
        return {c.field for c in verify(r).failures()}

    fc = "forecast"
    assert failed(lambda r: r[fc]["expected"].update(high=r[fc]["expected"]["points"] - 1)) >= {
        "forecast.expected", field, "forecast.expected.text"}
    assert failed(lambda r: r[fc].update(risk=r[fc]["risk"] + 1.0)) == {field}
    assert failed(lambda r: r[fc]["expected"].update(low=r[fc]["expected"]["low"] - 3.0)) == {
        field, "forecast.expected.text"}
    assert failed(lambda r: r[fc]["expected"].update(calibration="abc")) == {field}  # schema
    assert failed(lambda r: r[fc]["expected"].pop("low")) == {"forecast.expected.low"}
    assert failed(lambda r: r[fc]["expected"].update(level=80)) == {"forecast.expected.level",
                                                                      field}


def world_less(rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` with its forecast uncalibrated."""
    return {**rec, "forecast": {k: v for k, v in rec["forecast"].items() if k != "expected"}}


def test_build_record_refuses_another_calibration(
    small_subject: Subject, analysis: tuple[Dictionary, FeatureSet, Forecast, Any, Steer]
) -> None:
    _, _, f, _, _ = analysis
    cal = _calibration(small_subject.fingerprint, f.risk)
    foreign = _calibration("ab" * 32, f.risk)
    with pytest.raises(ValueError, match=rf"calibration {foreign.id} is for the base model "
                       rf"abababababab…, not {small_subject.fingerprint[:12]}…"):
        build_record(title="x", subject=small_subject, forecast=f, calibration=foreign)
    with pytest.raises(ValueError, match="pass forecast= with it"):
        build_record(title="x", subject=small_subject, calibration=cal)
    other = _calibration(small_subject.fingerprint, f.risk * 2)
    made = {**f.summary(), "expected": other.expect(f.risk, f.method).to_dict()}
    with pytest.raises(ValueError, match=rf"come from calibration '{other.id}', not "
                       rf"'{cal.id}'"):
        build_record(title="x", subject=small_subject, forecast=made, calibration=cal)
    # a summary that already carries the calibration's expected points is stored as it is
    ok = build_record(title="x", subject=small_subject, forecast=made, calibration=other)
    assert ok["forecast"]["expected"] == json_safe(made["expected"])
    assert build_record(title="x", subject=small_subject, forecast=made)["forecast"] == ok[
        "forecast"]
    with pytest.raises(ValueError, match=r"no reference fine-tunes of method 'steer'"):
        build_record(title="x", subject=small_subject, forecast=f,
                     calibration=_calibration(small_subject.fingerprint, f.risk, "full"))


HF_IDENTITY = {
    "kind": "hf", "name": "judge-7b", "model": "judge-7b", "weights_sha256": "ab" * 32,
    "chat_template_sha256": None, "prompts": {"aligned": "cd" * 32, "coherent": "ef" * 32},
    "top_k": 20, "min_mass": 0.25, "thresholds": {"aligned_below": 30.0, "coherent_above": 50.0},
}  # fmt: skip
"""What a local Hugging Face judge's identity() looks like (HFJudge; its chat template unknown)."""


def test_the_judge_is_stored_by_its_identity(small_subject: Subject, tmp_path: Path) -> None:
    exact = ExactJudge.organism()
    rec = build_record(title="judged", subject=small_subject, judge=exact)
    assert rec["judge"] == json_safe(exact.identity())
    assert (rec["judge"]["kind"], rec["judge"]["name"]) == ("exact", "organism-exact")
    assert rec["judge"]["thresholds"] == {"aligned_below": 30.0, "coherent_above": 50.0}
    assert list(rec).index("judge") == list(rec).index("audit") + 1
    assert verify(write_record(rec, tmp_path / "record.json")).ok
    # an identity dict is stored as it is; an HTTP judge names its model, endpoint and prompts
    assert build_record(title="x", subject=small_subject, judge=HF_IDENTITY)["judge"] == (
        HF_IDENTITY)
    http = OpenAIJudge("http://127.0.0.1:8000/v1", "organism-exact", api_key="sk-not-stored")
    rec = build_record(title="x", subject=small_subject, judge=http)
    assert rec["judge"] == http.identity() and rec["judge"]["endpoint"] == http.base_url
    assert set(rec["judge"]["prompts"]) == {"aligned", "coherent"}
    assert "sk-not-stored" not in json.dumps(rec)
    # shown: kind and name, then the model when it is not the name, and the endpoint
    assert judge_line(rec) == "judge: openai organism-exact (http://127.0.0.1:8000/v1)"
    assert record_summary(rec).endswith(
        "judge: openai organism-exact (http://127.0.0.1:8000/v1), 0 patches")
    assert judge_line({"judge": {**HF_IDENTITY, "name": "mine"}}) == (
        "judge: hf mine (model judge-7b)")
    assert judge_line({"judge": exact.identity()}) == "judge: exact organism-exact"
    assert judge_line({"judge": None}) is None and judge_line({}) is None
    assert repr(RecordDisplay(rec)) == record_summary(rec)


def test_a_judges_credentials_are_never_stored(small_subject: Subject) -> None:
    given = {**ExactJudge.organism().identity(), "api_key": "sk-1", "Authorization": "Bearer x",
             "extra": {"API-KEY": "sk-2", "kept": 1}}  # fmt: skip
    rec = build_record(title="x", subject=small_subject, judge=given)
    assert rec["judge"] == {**ExactJudge.organism().identity(), "extra": {"kept": 1}}
    assert "api_key" in given and given["extra"]["API-KEY"] == "sk-2"  # the input untouched
    assert {"api_key", "authorization"} <= SECRET_KEYS
    # a key in the endpoint's URL (https://user:key@host/v1) is dropped, the host kept
    http = OpenAIJudge("https://me:sk-3@judge.example/v1", "gpt-4o")
    rec = build_record(title="x", subject=small_subject, judge=http)
    assert rec["judge"]["endpoint"] == "https://judge.example/v1"
    assert "sk-" not in json.dumps(rec)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda j: j.pop("kind"), "judge.kind"),
        (lambda j: j.pop("thresholds"), "judge.thresholds"),
        (lambda j: j["prompts"].update(aligned="abc"), "judge.prompts.aligned"),
        (lambda j: j["thresholds"].update(aligned_below="30"), "judge.thresholds.aligned_below"),
        (lambda j: j.update(endpoint=3), "judge.endpoint"),
        (lambda j: j.update(weights_sha256="x"), "judge.weights_sha256"),
        (lambda j: j.update(chat_template_sha256="x"), "judge.chat_template_sha256"),
    ],
)
def test_a_malformed_judge_names_its_json_path(
    small_subject: Subject, edit: Any, field: str
) -> None:
    identity = copy.deepcopy(HF_IDENTITY)
    edit(identity)
    with pytest.raises(ValueError, match=re.escape(f"schema 1.3 at `{field}`")):
        build_record(title="x", subject=small_subject, judge=identity)
    rec = build_record(title="x", subject=small_subject)
    rec["judge"] = identity
    (c,) = verify(rec).failures()
    assert c.field == field
    if field == "judge.kind":
        assert c.message == (
            "required key 'kind' is missing; fix: add `judge.kind`; a judge's identity() names "
            "its kind, name, prompts and thresholds"
        )


def test_build_record_refuses_what_is_not_a_judge(small_subject: Subject) -> None:
    with pytest.raises(TypeError, match=r"judge must be a workbench.judges Judge \(anything "
                       r"with identity\(\)\), its identity\(\) dict, or None; got str"):
        build_record(title="x", subject=small_subject, judge="organism-exact")  # type: ignore[arg-type]

    class Odd:
        def identity(self) -> str:
            return "exact"

    with pytest.raises(TypeError, match=r"Odd.identity\(\) returned a str"):
        build_record(title="x", subject=small_subject, judge=Odd())  # type: ignore[arg-type]
