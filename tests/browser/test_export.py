"""Offline HTML export (``workbench.reports``): the exporter's output, then the page in Chromium.

The first tests need no browser (and no kernel): they export notebooks whose widget state is
built in-process with a toy anywidget and check the HTML itself. The ``browser`` tests open the
exported pages in headless Chromium with every non-localhost request blocked and recorded.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from _browser import OfflinePage, StaticServer, jupyter_env, open_offline_page
from _notebooks import (
    JUPYTER,
    KERNELSPEC,
    decoded_buffers,
    external_references,
    html_widget_state,
    nbconvert,
    notebook_with_widgets,
    view_output,
)
from _pixels import browser_fraction, non_background_fraction, pillow_fraction
from _toy import TOY_SOURCE, toy_namespace

from workbench.reports import WorkbenchHTMLExporter, export_html

# a 4x4 red PNG, the static fallback of a widget view without saved state
RED_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000040000000408020000002693"
        "09290000001549444154789c63f8cfc0f09f8181e13f2e0c003e9f1df1a9a0"
        "d5ac0000000049454e44ae426082"
    )
).decode()


@pytest.fixture(scope="module")
def toy() -> dict[str, Any]:
    return toy_namespace()


def _export(nb: nbformat.NotebookNode, tmp_path: Path, name: str = "report") -> tuple[Path, str]:
    src = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, src)
    out = export_html(src, tmp_path / f"{name}.html")
    return out, out.read_text(encoding="utf-8")


def _points(widget: Any) -> np.ndarray:
    return np.frombuffer(widget.points, dtype="<f4").reshape(-1, 2)


# --------------------------------------------------------------------- the HTML, no browser


def test_export_is_self_contained(toy: dict[str, Any], tmp_path: Path) -> None:
    w = toy["Toy"](n=500, label="hello")
    out, html = _export(notebook_with_widgets([w], title="Toy <report>"), tmp_path)
    assert out == tmp_path / "report.html"
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<title>Toy &lt;report&gt;</title>" in html
    assert external_references(html) == []
    for cdn in ("require.js", "requirejs", "html-manager", "embed-amd", "mathjax", "mermaid",
                "cdnjs", "unpkg", "jsdelivr", "fonts.googleapis"):
        assert cdn not in html.lower(), cdn
    # the runtime, once, and one mount per view
    assert html.count("window.__wbStatic = {") == 1
    assert html.count('<script type="module">window.__wbStatic.mount(') == 1
    assert f'data-wb-model-id="{w.model_id}"' in html
    # the model's CSS inline, its ESM in the saved state
    assert re.search(r'<style[^>]* data-wb-css="[^"]+"[^>]*>\.wb-toy \{', html)
    state = html_widget_state(html)
    assert state[w.model_id]["state"]["_esm"] == w._esm


def test_export_keeps_decodable_binary_state(toy: dict[str, Any], tmp_path: Path) -> None:
    w = toy["Toy"](n=777, label="buffers")
    _, html = _export(notebook_with_widgets([w]), tmp_path)
    entry = html_widget_state(html)[w.model_id]
    assert "points" not in entry["state"]  # travels as a buffer, not JSON
    buffers = decoded_buffers(entry)
    assert buffers[("points",)] == w.points
    np.testing.assert_array_equal(
        np.frombuffer(buffers[("points",)], dtype="<f4").reshape(-1, 2), _points(w)
    )
    assert entry["state"]["label"] == "buffers"


def test_widget_views_without_state_fall_back(toy: dict[str, Any], tmp_path: Path) -> None:
    import ipywidgets

    live = toy["Toy"](n=50)
    slider = ipywidgets.IntSlider(value=7, description="not an anywidget")
    url_esm = toy["Toy"](n=10)
    url_esm._esm = "https://example.invalid/widget.js"
    cells = [
        nbformat.v4.new_code_cell("gone", outputs=[
            view_output("0" * 32, **{"image/png": RED_PNG, "text/plain": "Gone()"})
        ]),
        nbformat.v4.new_code_cell("slider", outputs=[
            view_output(slider.model_id, **{"text/plain": "IntSlider(value=7)"})
        ]),
        nbformat.v4.new_code_cell("url", outputs=[
            view_output(url_esm.model_id, **{"text/plain": "Toy(remote esm)"})
        ]),
        nbformat.v4.new_code_cell("bare", outputs=[view_output("f" * 32)]),
        nbformat.v4.new_code_cell("print(1)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="plain stream output\n")
        ]),
    ]
    nb = notebook_with_widgets([live], extra_state=[slider, url_esm], extra_cells=cells)
    _, html = _export(nb, tmp_path)
    assert html.count("window.__wbStatic.mount(") == 1  # only the live toy
    assert f"data:image/png;base64,{RED_PNG}" in html  # no state: its PNG instead
    assert "IntSlider(value=7)" in html  # not an anywidget: its text instead
    assert "Toy(remote esm)" in html  # remote ESM cannot work offline: its text instead
    assert "plain stream output" in html
    assert external_references(html) == []


def test_exporter_is_nbconverts_wb_html(toy: dict[str, Any], tmp_path: Path) -> None:
    """``jupyter nbconvert --to wb-html`` finds the exporter through its entry point."""
    from nbconvert.exporters import get_exporter

    assert get_exporter("wb-html") is WorkbenchHTMLExporter
    w = toy["Toy"](n=300, label="cli")
    nbformat.write(notebook_with_widgets([w]), tmp_path / "cli.ipynb")
    nbconvert(["--to", "wb-html", "cli.ipynb"], env=None, cwd=tmp_path)
    html = (tmp_path / "cli.html").read_text(encoding="utf-8")
    assert f'data-wb-model-id="{w.model_id}"' in html
    assert external_references(html) == []
    assert Path(JUPYTER).exists()


def test_export_html_executes_first(
    tmp_path: Path, jupyter_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``execute=True`` runs the notebook (kernel: this interpreter) and stores widget state."""
    for key, value in jupyter_env(jupyter_home).items():
        monkeypatch.setenv(key, value)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [
        nbformat.v4.new_code_cell(TOY_SOURCE),
        nbformat.v4.new_code_cell("w = Toy(n=64, label='run by export_html')\nw"),
    ]
    src = tmp_path / "unexecuted.ipynb"
    nbformat.write(nb, src)
    out = export_html(src, tmp_path / "out" / "executed.html", execute=True, timeout=300)
    html = out.read_text(encoding="utf-8")
    state = html_widget_state(html)
    toys = [k for k, v in state.items() if v["state"].get("label") == "run by export_html"]
    assert len(toys) == 1
    assert len(decoded_buffers(state[toys[0]])[("points",)]) == 64 * 2 * 4
    assert f'data-wb-model-id="{toys[0]}"' in html
    assert external_references(html) == []
    assert "widgets" not in nbformat.read(src, as_version=4).metadata  # the file is untouched


def test_notebook_without_widgets_exports_plainly(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1", outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)
    ]))
    _, html = _export(nb, tmp_path, "plain")
    assert "__wbStatic" not in html
    assert external_references(html) == []


@pytest.mark.browser
def test_offline_guard_records_what_leaves(chromium: Any, static_server: StaticServer) -> None:
    """The guard the other tests rely on: off-machine requests are aborted and recorded,
    localhost ones pass."""
    page_path = static_server.root / "leaky.html"
    page_path.write_text(
        "<!doctype html><img src='https://example.invalid/pixel.png'>"
        "<script>fetch('http://198.51.100.7/x').catch(() => {});"
        "fetch('/leaky.html').then(r => document.title = 'local ' + r.status);</script>"
    )
    guard = open_offline_page(chromium)
    try:
        guard.page.goto(static_server.url_for(page_path))
        guard.page.wait_for_function("document.title === 'local 200'")
        deadline = time.monotonic() + 10
        while len(guard.blocked) < 2 and time.monotonic() < deadline:
            guard.page.wait_for_timeout(100)
        assert sorted(guard.blocked) == [
            "http://198.51.100.7/x", "https://example.invalid/pixel.png"
        ]
        with pytest.raises(AssertionError, match="leave localhost"):
            guard.assert_offline()
    finally:
        guard.context.close()


@pytest.mark.browser
def test_pixel_counters_agree(offline: OfflinePage) -> None:
    """The Pillow path and the in-browser fallback count the same pixels."""
    pytest.importorskip("PIL")
    offline.page.set_content(
        '<div id="d" style="width:200px;height:100px;background:#fff;position:relative">'
        '<div style="position:absolute;left:0;top:0;width:20px;height:50px;background:#123">'
        "</div></div>"
    )
    png = offline.page.locator("#d").screenshot()
    a, b = pillow_fraction(png), browser_fraction(png, offline.page)
    assert a == pytest.approx(0.05, abs=0.005)
    assert b == pytest.approx(a, abs=1e-6)


# --------------------------------------------------------------------------- in the browser


def _check_toy_rendered(guard: OfflinePage, w: Any) -> None:
    page = guard.page
    view = page.locator(f'[data-wb-model-id="{w.model_id}"]')
    toy_root = view.locator('[data-testid="wb-toy"][data-rendered="1"]')
    toy_root.wait_for(timeout=30_000)
    assert view.get_attribute("data-wb-static") == "1", guard.console + guard.page_errors
    assert toy_root.get_attribute("data-webgl") == "1"
    assert toy_root.get_attribute("data-n") == str(len(_points(w)))
    assert toy_root.get_attribute("data-label") == w.label
    assert float(toy_root.get_attribute("data-first") or "nan") == pytest.approx(0.25)
    assert toy_root.get_attribute("data-selection") == "[]"
    # the inline _css applies
    assert toy_root.evaluate("e => getComputedStyle(e).borderTopColor") == "rgb(68, 170, 119)"
    canvas = toy_root.locator("canvas")
    assert non_background_fraction(canvas.screenshot(), page) > 0.01
    # set() fires change:<name> locally: the view reacts to its own click without a kernel
    canvas.click()
    page.wait_for_function(
        "e => e.getAttribute('data-selection') === '[0]'", arg=toy_root.element_handle()
    )
    assert not guard.page_errors, guard.page_errors


@pytest.mark.browser
@pytest.mark.parametrize("form", ["object", "factory", "named"])
def test_exported_toy_renders_from_localhost(
    toy: dict[str, Any], tmp_path: Path, static_server: StaticServer, offline: OfflinePage,
    form: str,
) -> None:
    w = toy["Toy"](n=2000, label=f"toy-{form}", module_form=form)
    two = toy["Toy"](n=100, label="second", seed=1)
    nb = notebook_with_widgets([w, two])
    src = static_server.root / f"toy-{form}.ipynb"
    nbformat.write(nb, src)
    out = export_html(src, static_server.root / f"toy-{form}.html")
    offline.page.goto(static_server.url_for(out))
    _check_toy_rendered(offline, w)
    _check_toy_rendered(offline, two)
    offline.assert_offline()


@pytest.mark.browser
def test_exported_toy_renders_from_file_url(
    toy: dict[str, Any], tmp_path: Path, offline: OfflinePage
) -> None:
    w = toy["Toy"](n=1000, label="file")
    out, _ = _export(notebook_with_widgets([w]), tmp_path, "file")
    offline.page.goto(out.resolve().as_uri())
    _check_toy_rendered(offline, w)
    offline.assert_offline()


@pytest.mark.browser
def test_executed_toy_notebook_exports_from_the_cli(
    tmp_path: Path, jupyter_home: Path, static_server: StaticServer, offline: OfflinePage
) -> None:
    """nbconvert executes it (widget state stored) and exports it; Chromium renders it offline."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [
        nbformat.v4.new_code_cell(TOY_SOURCE),
        nbformat.v4.new_code_cell("w = Toy(n=3000, label='executed')\nw"),
    ]
    root = static_server.root / "executed"
    root.mkdir(exist_ok=True)
    nbformat.write(nb, root / "toy.ipynb")
    env = jupyter_env(jupyter_home)
    nbconvert(["--to", "notebook", "--execute", "--ExecutePreprocessor.store_widget_state=True",
               "--output", "toy.executed.ipynb", "toy.ipynb"], env=env, cwd=root)
    executed = nbformat.read(root / "toy.executed.ipynb", as_version=4)
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    toy_ids = [k for k, v in state.items() if v["state"].get("label") == "executed"]
    assert len(toy_ids) == 1
    nbconvert(["--to", "wb-html", "toy.executed.ipynb"], env=env, cwd=root)
    html = (root / "toy.executed.html").read_text(encoding="utf-8")
    assert external_references(html) == []

    class Saved:
        model_id = toy_ids[0]
        label = "executed"
        points = base64.b64decode(state[model_id]["buffers"][0]["data"])

    offline.page.goto(static_server.url_for(root / "toy.executed.html"))
    _check_toy_rendered(offline, Saved)
    offline.assert_offline()
