"""``export_html``: one notebook -> one self-contained HTML file (see :mod:`workbench.reports`).

With ``title``, ``parameters``, ``record`` or ``status`` the page opens with a header
(``<header class="wb-report-header">``, styles inline, no external URLs): the title, a table of
the parameters, and the fingerprints (subject / dictionary / data sha256) read from a deployment
record (:mod:`workbench.record`), as the run reports of :mod:`workbench.runs` have.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HEADER_CSS = """
.wb-report-header{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;
margin:16px auto 8px;padding:12px 16px;border:1px solid #d0d7de;border-radius:6px;
background:#f6f8fa;color:#1f2328}
.wb-report-header h1{font-size:1.4em;margin:0 0 8px}
.wb-report-header h2{font-size:1.05em;margin:12px 0 4px}
.wb-report-header table{border-collapse:collapse;font-size:.9em}
.wb-report-header th,.wb-report-header td{border:1px solid #d0d7de;padding:2px 8px;
text-align:left;vertical-align:top}
.wb-report-header code{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
.wb-report-header .wb-status-failed{color:#b00020;font-weight:600}
.wb-report-header .wb-status-complete{color:#116329;font-weight:600}
"""


def _code(value: Any) -> str:
    return f"<code>{html.escape(str(value))}</code>"


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return _code(text)


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]], cls: str) -> str:
    out = [f'<table class="{cls}"><thead><tr>']
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _files(files: Any) -> list[tuple[str, str]]:
    out = []
    for f in files or []:
        if isinstance(f, Mapping):
            out.append((str(f.get("path", "")), str(f.get("sha256", ""))))
    return out


def fingerprint_rows(record: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, name, file, sha256) rows of a record's subject, dictionary and data."""
    rows: list[tuple[str, str, str, str]] = []
    subject = record.get("subject")
    if isinstance(subject, Mapping):
        name = str(subject.get("name", ""))
        if subject.get("fingerprint"):
            rows.append(("subject", name, "weights (state dict)", str(subject["fingerprint"])))
        rows += [("subject", name, p, h) for p, h in _files(subject.get("files"))]
    dictionary = record.get("dictionary")
    if isinstance(dictionary, Mapping):
        name = str(dictionary.get("name", ""))
        hook = dictionary.get("hook_name")
        if hook:
            name = f"{name} @ {hook}"
        if dictionary.get("fingerprint"):
            rows.append(("dictionary", name, "weights", str(dictionary["fingerprint"])))
        rows += [("dictionary", name, p, h) for p, h in _files(dictionary.get("files"))]
    data = record.get("data")
    if isinstance(data, Mapping):
        for key, entry in data.items():
            if isinstance(entry, Mapping):
                n = entry.get("n_records")
                label = f"{key} ({n} records)" if n is not None else str(key)
                rows.append(("data", label, str(entry.get("path", "")),
                             str(entry.get("sha256", ""))))
    return rows


def report_header(
    *,
    title: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
    status: str | None = None,
) -> str:
    """The report header's HTML (empty when there is nothing to show)."""
    if title is None and parameters is None and record is None and status is None:
        return ""
    parts = [f"<style>{HEADER_CSS}</style>",
             '<header class="wb-report-header" data-wb-report-header="1">']
    if title is not None:
        parts.append(f"<h1>{html.escape(title)}</h1>")
    if status is not None:
        state = "failed" if status.startswith("failed") else "complete" \
            if status.startswith("complete") else "other"
        parts.append(f'<p class="wb-status wb-status-{state}">Status: {html.escape(status)}</p>')
    if parameters is not None:
        parts.append("<h2>Parameters</h2>")
        if parameters:
            rows = [(html.escape(str(k)), _value(v)) for k, v in sorted(parameters.items())]
            parts.append(_table(("parameter", "value"), rows, "wb-parameters"))
        else:
            parts.append("<p>(none)</p>")
    if record is not None:
        meta = [
            f"{html.escape(k)}: {_code(record[k])}"
            for k in ("title", "schema_version", "created") if record.get(k) is not None
        ]
        parts.append("<h2>Fingerprints</h2>")
        if meta:
            parts.append("<p>Record " + ", ".join(meta) + "</p>")
        rows4 = [(html.escape(a), html.escape(b), _code(c), _code(d))
                 for a, b, c, d in fingerprint_rows(record)]
        if rows4:
            parts.append(_table(("", "name", "file", "sha256"), rows4, "wb-fingerprints"))
        else:
            parts.append("<p>(the record names no fingerprints)</p>")
    parts.append("</header>")
    return "\n".join(parts)


def _insert_header(body: str, header: str) -> str:
    for pattern in (r"<body[^>]*>\s*<main>", r"<body[^>]*>"):
        m = re.search(pattern, body)
        if m:
            return body[: m.end()] + "\n" + header + "\n" + body[m.end():]
    return header + body


def _load_record(record: Mapping[str, Any] | str | os.PathLike[str] | None) -> Any:
    if record is None or isinstance(record, Mapping):
        return record
    return json.loads(Path(record).read_text(encoding="utf-8"))


def export_html(
    notebook_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    execute: bool = False,
    timeout: int = 600,
    kernel_name: str | None = None,
    title: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    status: str | None = None,
) -> Path:
    """Export a notebook to one offline HTML file in which its anywidget outputs stay live.

    The widgets render from the notebook's saved widget state (``metadata.widgets``). With
    ``execute=True`` the notebook is first run top to bottom by nbclient (in its own directory,
    widget state stored; the notebook file itself is not modified). ``out_path`` is written
    (parents created) and returned. Widget outputs that cannot render offline fall back to their
    other representations (e.g. ``text/plain``).

    The optional header: ``title`` (also the page's ``<title>``), ``parameters`` (a table),
    ``record`` (a deployment record dict, or the path of its JSON: its subject / dictionary /
    data fingerprints as a table) and ``status`` (one line, e.g. ``"complete"`` or
    ``"failed: cell 3 ..."``). Without any of them the page is as before.
    """
    import nbformat

    from workbench.reports._exporter import WorkbenchHTMLExporter

    src = Path(notebook_path)
    out = Path(out_path)
    nb = nbformat.read(src, as_version=4)
    if execute:
        from nbclient import NotebookClient

        client = NotebookClient(
            nb,
            timeout=timeout,
            store_widget_state=True,
            resources={"metadata": {"path": str(src.parent.resolve())}},
        )
        if kernel_name is not None:
            client.kernel_name = kernel_name
        client.execute()
    if title is not None:
        nb.metadata["title"] = title
    exporter = WorkbenchHTMLExporter()
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": src.stem}})
    header = report_header(title=title, parameters=parameters, record=_load_record(record),
                           status=status)
    if header:
        body = _insert_header(body, header)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out
