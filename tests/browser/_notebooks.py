"""Notebook helpers for the browser tests: saved widget state without a kernel, HTML checks.

``notebook_with_widgets`` builds what an executed notebook holds (``metadata.widgets`` with the
models' state and base64 buffers, one ``widget-view`` output per widget) from widgets created
in-process, through ipywidgets' own buffer splitting, so the exporter is tested on the exact
format nbclient and JupyterLab save. ``external_references`` lists every reference in an HTML
page that would make the browser fetch something off the machine.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
JUPYTER = str(Path(sys.executable).parent / "jupyter")


def saved_state(widget: Any) -> dict[str, Any]:
    """One model's entry in ``metadata.widgets``, buffers base64-encoded (nbclient's format)."""
    from ipywidgets.widgets.widget import _remove_buffers

    state, paths, buffers = _remove_buffers(widget.get_state())
    entry: dict[str, Any] = {
        "model_name": state.get("_model_name"),
        "model_module": state.get("_model_module"),
        "model_module_version": state.get("_model_module_version"),
        "state": state,
    }
    if buffers:
        entry["buffers"] = [
            {"path": list(p), "data": base64.b64encode(bytes(b)).decode(), "encoding": "base64"}
            for p, b in zip(paths, buffers, strict=True)
        ]
    return entry


def view_output(model_id: str, **other: Any) -> NotebookNode:
    data = {VIEW_MIME: {"version_major": 2, "version_minor": 0, "model_id": model_id}}
    data.update(other)
    return nbformat.v4.new_output("display_data", data=data)


def notebook_with_widgets(
    widgets: Sequence[Any],
    *,
    extra_state: Iterable[Any] = (),
    extra_cells: Iterable[NotebookNode] = (),
    title: str | None = None,
) -> NotebookNode:
    """A notebook with one code cell per widget (its view as output) and their saved state."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    if title:
        nb.metadata["title"] = title
    nb.cells.append(nbformat.v4.new_markdown_cell("# Toy report\n\nInline math $x^2$ stays TeX."))
    state: dict[str, Any] = {}
    for i, w in enumerate(widgets):
        cell = nbformat.v4.new_code_cell(f"w{i}", execution_count=i + 1)
        cell.outputs = [view_output(w.model_id, **{"text/plain": repr(w)})]
        nb.cells.append(cell)
        state[w.model_id] = saved_state(w)
    for w in extra_state:
        state[w.model_id] = saved_state(w)
    nb.cells.extend(extra_cells)
    nb.metadata["widgets"] = {STATE_MIME: {"state": state, "version_major": 2, "version_minor": 0}}
    return nb


_EXTERNAL = [
    re.compile(r"""<script[^>]*\bsrc\s*=""", re.I),
    re.compile(r"""<link[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"""\b(?:src|href|action|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"""\bimport\s*\(\s*["'`]\s*(?:https?:)?//""", re.I),
    re.compile(r"""\bfrom\s*["'`]\s*(?:https?:)?//""", re.I),
    re.compile(r"""@import\b""", re.I),
    re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I),
]


def external_references(html: str) -> list[str]:
    """Every spot in ``html`` that would load something from off the machine."""
    hits: list[str] = []
    for pattern in _EXTERNAL:
        for m in pattern.finditer(html):
            hits.append(html[max(0, m.start() - 40): m.end() + 80])
    return hits


def html_widget_state(html: str) -> dict[str, Any]:
    """The saved widget state embedded in an exported page (model id -> entry)."""
    m = re.search(
        r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', html, re.S
    )
    assert m, "no widget state in the page"
    return dict(json.loads(m.group(1))["state"])


def decoded_buffers(entry: dict[str, Any]) -> dict[tuple[Any, ...], bytes]:
    return {tuple(b["path"]): base64.b64decode(b["data"]) for b in entry.get("buffers", [])}


def nbconvert(args: Sequence[str], env: dict[str, str] | None, cwd: Path, timeout: float = 600):
    """Run nbconvert's own CLI (``jupyter nbconvert ...``); fail with its output on error."""
    proc = subprocess.run(
        [JUPYTER, "nbconvert", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"nbconvert {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc
