"""Reports: notebooks exported as self-contained, offline HTML with their widgets live.

``export_html(notebook_path, out_path)`` turns a notebook that holds saved widget state (from
JupyterLab's "Save Widget State Automatically" or an nbconvert/nbclient execution) into one HTML
file with no external scripts, stylesheets or fonts: the anywidget widgets of
:mod:`workbench.widgets` (and any other anywidget) render from their saved state through a small
inline runtime, with no kernel. The same export is nbconvert's ``wb-html`` format::

    jupyter nbconvert --to wb-html notebook.ipynb

``export_html(..., title=, parameters=, record=, status=)`` opens the page with a header: the
title, a parameters table and the subject / dictionary / data fingerprints of a deployment record
(what the run reports of :mod:`workbench.runs` show); ``report_header`` gives that HTML alone.

Needs the ``dev`` extra (nbconvert). Names are imported lazily so ``import workbench.reports``
does not import nbconvert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.reports.html import export_html, report_header

if TYPE_CHECKING:
    from workbench.reports._exporter import WorkbenchHTMLExporter

__all__ = ["WorkbenchHTMLExporter", "export_html", "report_header"]


def __getattr__(name: str) -> Any:
    if name == "WorkbenchHTMLExporter":
        from workbench.reports._exporter import WorkbenchHTMLExporter

        return WorkbenchHTMLExporter
    raise AttributeError(f"module 'workbench.reports' has no attribute {name!r}")
