"""``WorkbenchHTMLExporter``: nbconvert's lab HTML export, self-contained, with live anywidgets.

nbconvert's stock HTML export loads require.js and ``@jupyter-widgets/html-manager`` from CDNs
(and MathJax and Mermaid too), so a page with widgets does not work offline. This exporter keeps
the lab template (its CSS is inlined already) and changes four things:

* no ``<script src=...>`` from a CDN: the require.js, widget-manager, MathJax and Mermaid blocks
  are emptied (math stays as TeX source, Mermaid diagrams as their source text);
* every widget view whose model is an anywidget model with saved state (``_model_module`` is
  ``"anywidget"`` and the state has an inline ``_esm``) becomes a ``<div>`` plus an inline
  ``<script type="module">`` that renders it through the static runtime of
  :mod:`workbench.reports._shim` (emitted once per page), with the model's ``_css`` inlined as a
  ``<style>``;
* any other widget view (no saved state, not an anywidget, or an ``_esm`` that is a URL) falls
  back to the output's other mime types (``image/png``, ``text/plain``, ...), and is dropped
  when it has none;
* the saved widget state stays in the page once (the lab template's footer
  ``<script type="application/vnd.jupyter.widget-state+json">``), binary buffers base64-encoded.

It is registered as the nbconvert exporter ``wb-html``::

    jupyter nbconvert --to wb-html notebook.ipynb

The notebook must hold widget state: JupyterLab's "Save Widget State Automatically", or an
execution by nbconvert/nbclient (``jupyter nbconvert --to notebook --execute``, which stores it by
default).
"""

from __future__ import annotations

import copy
import html
import json
from collections.abc import Mapping
from typing import Any

from jinja2 import ChoiceLoader, DictLoader
from nbconvert.exporters import HTMLExporter
from nbformat import NotebookNode
from traitlets import default

from workbench.reports._shim import SHIM_JS

VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"

TEMPLATE_NAME = "wb_index.html.j2"
TEMPLATE = r"""{%- extends 'index.html.j2' -%}

{%- block html_head_js_requirejs -%}
{%- if resources.wb_has_widgets %}
<script type="text/javascript">{{ resources.wb_shim }}</script>
{%- endif %}
{%- endblock html_head_js_requirejs -%}

{% block jupyter_widgets %}
{% endblock jupyter_widgets %}

{%- block html_head_js_mathjax -%}
{%- endblock html_head_js_mathjax -%}

{%- block html_head_js_mermaidjs -%}
{%- endblock html_head_js_mermaidjs -%}

{%- block data_widget_view scoped %}
{{ resources.wb_widget_view(output.data['application/vnd.jupyter.widget-view+json'], extra_class) }}
{%- endblock data_widget_view -%}
"""


def widget_states(nb: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's saved widget state: model id -> ``{model_name, ..., state, buffers}``."""
    widgets = nb.get("metadata", {}).get("widgets", {}) or {}
    saved = widgets.get(STATE_MIME, {}) or {}
    return dict(saved.get("state", {}) or {})


def is_exportable_anywidget(entry: Mapping[str, Any] | None) -> bool:
    """Whether a saved model is an anywidget model the static runtime can render offline."""
    if not entry:
        return False
    state = entry.get("state") or {}
    module = state.get("_model_module", entry.get("model_module"))
    esm = state.get("_esm")
    if module != "anywidget" or not isinstance(esm, str) or not esm.strip():
        return False
    return not esm.lstrip().startswith(("http://", "https://", "//"))


def _escape_script(text: str) -> str:
    """Make text safe inside ``<script>``/``<style>``: no ``</`` can end the element."""
    return text.replace("</", "<\\/")


def _prune_widget_views(nb: NotebookNode, exportable: set[str]) -> None:
    """Drop widget views that cannot render offline, so other mime types take their place."""
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        kept = []
        for output in outputs:
            data = output.get("data")
            if data is not None and VIEW_MIME in data:
                model_id = (data.get(VIEW_MIME) or {}).get("model_id")
                if model_id not in exportable:
                    del data[VIEW_MIME]
                    if not data:
                        continue
            kept.append(output)
        cell["outputs"] = kept


class WorkbenchHTMLExporter(HTMLExporter):
    """Self-contained HTML (no CDN) in which anywidget outputs render from their saved state."""

    export_from_notebook = "HTML (offline widgets)"

    @default("template_file")
    def _wb_template_file_default(self) -> str:
        return TEMPLATE_NAME

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wb_states: dict[str, Any] = {}
        self._wb_css_done: set[str] = set()
        self._wb_views = 0

    def _create_environment(self) -> Any:
        environment = super()._create_environment()
        environment.loader = ChoiceLoader(
            [DictLoader({TEMPLATE_NAME: TEMPLATE}), environment.loader]
        )
        return environment

    def _init_resources(self, resources: dict[str, Any]) -> dict[str, Any]:
        resources = super()._init_resources(resources)
        # nbconvert's defaults point at CDNs; nothing here may load them
        for key in ("require_js_url", "mathjax_url", "mermaid_js_url",
                    "mermaid_layout_elk_js_url", "jquery_url", "jupyter_widgets_base_url",
                    "widget_renderer_url"):
            resources[key] = ""
        resources["wb_has_widgets"] = bool(self._wb_states)
        resources["wb_shim"] = _escape_script(SHIM_JS)
        resources["wb_widget_view"] = self._widget_view_html
        return resources

    def _widget_view_html(self, view: Mapping[str, Any], extra_class: str = "") -> str:
        model_id = str(view.get("model_id", ""))
        entry = self._wb_states.get(model_id)
        if entry is None:  # pruned before rendering; kept as a guard
            return ""
        state = entry.get("state") or {}
        parts = []
        css = state.get("_css")
        css_key = str(state.get("_anywidget_id") or model_id)
        if isinstance(css, str) and css.strip() and css_key not in self._wb_css_done:
            self._wb_css_done.add(css_key)
            parts.append(
                f'<style type="text/css" data-wb-css="{html.escape(css_key)}">'
                f"{_escape_script(css)}</style>"
            )
        self._wb_views += 1
        el_id = f"wb-widget-{self._wb_views}-{model_id}"
        parts.append(
            f'<div id="{html.escape(el_id)}" class="jupyter-widgets jp-OutputArea-output '
            f'wb-static-widget {html.escape(extra_class or "")}" '
            f'data-wb-model-id="{html.escape(model_id)}"></div>'
        )
        parts.append(
            '<script type="module">'
            f"window.__wbStatic.mount(document.getElementById({json.dumps(el_id)}), "
            f"{json.dumps(model_id)});</script>"
        )
        return "\n".join(parts)

    def from_notebook_node(  # type: ignore[override]
        self, nb: NotebookNode, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        nb = copy.deepcopy(nb)
        states = widget_states(nb)
        exportable = {mid for mid, entry in states.items() if is_exportable_anywidget(entry)}
        _prune_widget_views(nb, exportable)
        self._wb_states = {mid: states[mid] for mid in exportable}
        self._wb_css_done = set()
        self._wb_views = 0
        try:
            return super().from_notebook_node(nb, resources, **kw)
        finally:
            self._wb_states = {}
            self._wb_css_done = set()
