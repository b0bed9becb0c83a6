"""``export_html``: one notebook -> one self-contained HTML file (see :mod:`workbench.reports`)."""

from __future__ import annotations

import os
from pathlib import Path


def export_html(
    notebook_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    execute: bool = False,
    timeout: int = 600,
    kernel_name: str | None = None,
) -> Path:
    """Export a notebook to one offline HTML file in which its anywidget outputs stay live.

    The widgets render from the notebook's saved widget state (``metadata.widgets``). With
    ``execute=True`` the notebook is first run top to bottom by nbclient (in its own directory,
    widget state stored; the notebook file itself is not modified). ``out_path`` is written
    (parents created) and returned. Widget outputs that cannot render offline fall back to their
    other representations (e.g. ``text/plain``).
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
    exporter = WorkbenchHTMLExporter()
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": src.stem}})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out
