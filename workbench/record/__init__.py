"""Deployment records: what a model was, what was measured on it, and fingerprints to re-check.

A record is one JSON file (schema: :func:`schema`, draft 2020-12, ``workbench/record/schema.json``)
with these sections, all required:

* ``schema_version`` (:data:`SCHEMA_VERSION`, 1.3), ``created`` (ISO time, UTC), ``title``,
  ``notes``, ``parameters``;
* ``subject``: name, source, ``fingerprint`` (state-dict sha256), the folder it was read from,
  its ``recipe`` when derived, and ``files`` (``[{path, sha256}]``: an organism build's
  ``model.safetensors``; empty for hub models);
* ``dictionary`` (or null): name, hook, fingerprint, ``files`` (``cfg.json`` and the
  ``*.safetensors`` of its SAE Lens folder);
* ``data``: ``{name: {path, sha256, n_records}}`` for the JSONL data files;
* ``features`` (a FeatureSet's strongest features, or null), ``overlaps``, ``forecast``
  (``Forecast.summary()`` or null; a calibrated forecast's ``expected``: points, interval, level
  and the id of the :class:`~workbench.calibration.Calibration` that gave them), ``audit``
  (``Audit.summary()`` or null), ``patches``
  (``{patch: describe(), efficacy: {metric: value}}``), ``context_audits``;
* ``judge`` (or null): the identity of the judge whose scores gave the behaviour figures
  (:meth:`workbench.judges.Judge.identity`: ``kind``, ``name``, the sha256 of each prompt
  template, the verdict thresholds; an HTTP judge's ``model``, ``endpoint``, ``top_logprobs``
  and ``min_mass``; a local HF judge's ``weights_sha256`` and ``chat_template_sha256``). EM
  rates are judge-sensitive, so a rate is reproducible only with its judge. Credentials are
  never stored (:data:`SECRET_KEYS` dropped, an endpoint's ``user:password@`` removed);
* ``environment``: python, torch, the model backend, sae_lens and workbench versions, device.

:func:`build_record` gathers it (paths stored absolute; NaN stored as null), :func:`write_record`
validates and writes it atomically, :func:`verify` re-checks a record: the schema, every file's
sha256, and the subject's and dictionary's fingerprints re-derived from their safetensors
(:func:`workbench.fingerprint.state_dict_sha256` of the loaded tensors). A fingerprint is
re-derived only where the record says the file holds exactly the state dict it was computed
from (``fingerprint_from_files``, checked when the record was built): true for organism builds
and for SAE Lens folders whose loaded state dict equals the file's tensors; false, and listed as
not checked, e.g. for a Hugging Face folder (TransformerLens converts the weights on load) or an
SAE whose loader transforms the saved tensors. Failing checks name the field as a JSON path,
e.g. ``subject.files[0].sha256``, ``dictionary.files[1].sha256``, ``data.insecure.sha256``.

Moved records: ``verify(record, base=folder)`` looks each absolute path up under ``folder`` by
its longest trailing part that exists there (so copying the files flat, or with their last
folders, both work); relative paths in a record resolve against ``base`` or the record's folder.

Calibrated forecasts: :func:`verify` re-derives ``forecast.expected`` from its calibration when
it finds the calibration's file (beside the record, under ``base``, or in the workbench cache,
:meth:`Calibration.directory <workbench.calibration.Calibration.directory>`), and lists it as not
checked otherwise; it always checks ``low <= points <= high``.

Older records: schema 1.0 called the audit section ``degradation``; 1.2 added
``forecast.expected``; 1.3 added ``judge``. A record is checked against the schema of the version
it declares (1.0's, 1.1's and 1.2's ship frozen), so old records still verify (a 1.0 one with a
note that ``degradation`` is the audit); :func:`upgrade_record` gives a record's current form
(an older record's ``judge`` is null: it does not say which judge scored it). :func:`verify`
checks the judge section against the schema only (an identity names a judge; it holds no file
to re-hash).

The command line ``workbench record verify RECORD`` is :func:`main_verify`.

In a notebook, :func:`display_record` (or :class:`RecordDisplay`) shows a record with the
JupyterLab record viewer: the MIME type :data:`RECORD_MIME`
(``application/vnd.workbench.record+json``), plain-text summary elsewhere.
"""

from workbench.record._build import (
    SECRET_KEYS,
    TOP_FEATURES,
    Identified,
    build_record,
    count_records,
    load_record,
    safetensors_sha256,
    write_record,
)
from workbench.record._display import (
    RECORD_MIME,
    RecordDisplay,
    display_record,
    expected_of,
    forecast_line,
    judge_line,
    record_summary,
)
from workbench.record._schema import (
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    SchemaError,
    json_path,
    json_safe,
    record_version,
    schema,
    schema_errors,
    upgrade_record,
    validate_record,
)
from workbench.record._verify import (
    Check,
    Verification,
    format_verification,
    main_verify,
    verify,
)

__all__ = [
    "RECORD_MIME",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "SECRET_KEYS",
    "TOP_FEATURES",
    "Check",
    "Identified",
    "RecordDisplay",
    "SchemaError",
    "Verification",
    "build_record",
    "count_records",
    "display_record",
    "expected_of",
    "forecast_line",
    "format_verification",
    "json_path",
    "json_safe",
    "judge_line",
    "load_record",
    "main_verify",
    "record_summary",
    "record_version",
    "safetensors_sha256",
    "schema",
    "schema_errors",
    "upgrade_record",
    "validate_record",
    "verify",
    "write_record",
]
