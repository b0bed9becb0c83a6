"""The real widgets in a real browser: JupyterLab with a kernel, and the offline HTML export.

* In JupyterLab (a ``jupyter lab`` subprocess, headless Chromium, every non-localhost request
  blocked and recorded): run a notebook holding a 100,000-point FeatureMap, a Neighborhood
  linked to it and a PatchPreview; the map draws (a non-blank canvas); a click at the canvas
  centre selects point 0 *in Python* (an observer writes ``fm.selection`` to a file) and the
  linked Neighborhood re-centres on it, in Python and in its DOM.
* Through nbconvert's own CLI: execute the notebook (widget state stored), export it with
  ``--to wb-html``, open the one HTML file in Chromium and check the map draws with no kernel
  and nothing fetched from off the machine.

The README's picture of the widgets is of the flagship analysis, taken by
``test_readme_pictures.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _browser import (
    FEATURE_MAP,
    NEIGHBORHOOD,
    PATCH_PREVIEW,
    Lab,
    OfflinePage,
    StaticServer,
    jupyter_env,
    open_offline_page,
    require_front_end,
    run_all_cells,
)
from _notebooks import JUPYTER, external_references, nbconvert
from _pixels import non_background_fraction
from _widget_notebooks import INITIAL_CENTER, widgets_notebook

pytestmark = pytest.mark.browser

N_POINTS = 100_000
REPO = Path(__file__).resolve().parents[2]
RENDER_TIMEOUT_MS = 180_000  # kernel start + a 100k-point map (and its PNG fallback) on 2 cores
FM, NB, PP = FEATURE_MAP, NEIGHBORHOOD, PATCH_PREVIEW


# A click at (x, y) whose press comes in the same task as the move onto the map, after two frames
# with the pointer at the page's corner, and whose release comes two frames later: the camera's
# frames see the button down and the whole jump from the corner as a drag.
JUMP_PRESS = """async ([x, y]) => {
    const target = document.elementFromPoint(x, y);
    const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
    const fire = (type, at, init) => at.dispatchEvent(new MouseEvent(type, {bubbles: true,
        cancelable: true, view: window, clientX: x, clientY: y, button: 0, ...init}));
    window.dispatchEvent(new MouseEvent("mousemove", {clientX: 0, clientY: 0, view: window}));
    await frame(); await frame();
    fire("mousemove", target, {buttons: 0});
    fire("mousedown", target, {buttons: 1, detail: 1});
    await frame(); await frame();
    fire("mouseup", target, {buttons: 0, detail: 1});
    fire("click", target, {buttons: 0, detail: 1});
}"""


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _wait_rendered(page: Any, selector: str, timeout_ms: int, guard: OfflinePage) -> Any:
    loc = page.locator(f'{selector}[data-rendered="1"]').first
    try:
        loc.wait_for(timeout=timeout_ms)
    except Exception as err:
        errors = [e for e in page.locator(f"{selector} .wb-error").all_inner_texts() if e]
        # a failed cell (e.g. a traceback) says why the widget never came
        tracebacks = page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
        ).all_inner_texts()
        raise AssertionError(
            f"{selector} did not render: {err}\nwidget errors: {errors}\n"
            f"cell errors: {[t[-2000:] for t in tracebacks]}\n"
            f"page errors: {guard.page_errors}\nconsole: {guard.console[-20:]}"
        ) from None
    return loc


def _assert_map_drawn(page: Any, fm: Any) -> Any:
    canvas = fm.locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box
    frac = non_background_fraction(canvas.screenshot(), page)
    assert frac > 0.01, f"the feature map canvas is blank ({frac:.4%} non-background pixels)"
    return canvas


def _element_at_centre(page: Any, canvas: Any) -> str:
    """The element the browser hit-tests at the canvas's centre (for a failure message)."""
    box = canvas.bounding_box()
    if not box:
        return "no box"
    return str(page.evaluate(
        """([x, y]) => { const e = document.elementFromPoint(x, y);
            return e ? `${e.tagName}.${String(e.className).slice(0, 40)}` : "nothing"; }""",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]))


def _widget_colours(page: Any) -> dict[str, dict[str, str]]:
    """Computed text and background colours of each widget's root element."""
    out = {}
    for key, sel in (("map", FM), ("hood", NB), ("preview", PP)):
        out[key] = page.evaluate(
            f"""() => {{ const s = getComputedStyle(document.querySelector('{sel}'));
                return {{color: s.color, background: s.backgroundColor}}; }}""")
    return out


def _luminance(css: str) -> float:
    """Relative luminance (0 black .. 1 white) of an ``rgb(...)``/``rgba(...)`` colour."""
    r, g, b = (int(x) / 255 for x in re.findall(r"[\d.]+", css)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _set_theme(page: Any, name: str) -> None:
    """Settings -> Theme -> ``name`` from JupyterLab's menu bar."""
    page.keyboard.press("Escape")
    page.locator(".lm-MenuBar-item", has_text="Settings").first.click()
    page.locator(".lm-Menu-item", has_text="Theme").first.hover()
    item = page.locator(".lm-Menu-item", has_text=name).first
    item.wait_for(state="visible", timeout=10_000)
    item.click()
    page.wait_for_function(
        f"() => document.body.dataset.jpThemeName === {json.dumps(name)}", timeout=30_000)


def test_lab_sees_the_widget_extensions(jupyter_home: Path) -> None:
    """anywidget's and ipywidgets' prebuilt lab extensions load in the test JupyterLab."""
    proc = subprocess.run(
        [JUPYTER, "labextension", "list"], env=jupyter_env(jupyter_home),
        capture_output=True, text=True, timeout=120,
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    for name in ("anywidget", "@jupyter-widgets/jupyterlab-manager"):
        line = next((ln for ln in listing.splitlines() if ln.strip().startswith(name + " ")), "")
        assert "enabled" in line and "OK" in line, f"{name} not enabled:\n{listing}"


def test_widgets_in_jupyterlab(lab: Lab, chromium: Any) -> None:
    # kernels run this interpreter (the venv's, with ipykernel and workbench)
    spec = lab.api("/api/kernelspecs")["kernelspecs"]["python3"]["spec"]
    assert spec["argv"][:3] == [sys.executable, "-m", "ipykernel_launcher"], spec["argv"]
    state_file = lab.root / "wb_state.json"
    nbformat.write(widgets_notebook(N_POINTS, state_file.name), lab.root / "widgets.ipynb")
    guard = open_offline_page(chromium, viewport=(1200, 2000))
    page = guard.page
    try:
        page.goto(lab.tree_url("widgets.ipynb"))
        page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
        # fold the left sidebar, so the notebook gets the width
        current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():
            current.first.click()
        run_all_cells(page)

        fm = _wait_rendered(page, FM, RENDER_TIMEOUT_MS, guard)
        nb = _wait_rendered(page, NB, 60_000, guard)
        _wait_rendered(page, PP, 60_000, guard)
        assert fm.get_attribute("data-points") == str(N_POINTS)
        assert page.locator(f'{PP} .wb-changed').count() > 0
        centre = nb.locator('[data-center="true"]')
        assert centre.count() == 1 and centre.get_attribute("data-id") == str(INITIAL_CENTER)
        state = _read_state(state_file)
        assert state == {"selection": [], "center": INITIAL_CENTER}, state

        canvas = _assert_map_drawn(page, fm)

        # click the canvas centre (point 0) the way a loaded machine delivered Playwright's click
        # in CI: the press arrives in the same frame as the move that brought the pointer from
        # the page's corner, so the camera counts the whole move as a drag. The map must undo
        # that pan (data-pans-undone) and select point 0; the kernel answers through the file.
        box = canvas.bounding_box()
        page.evaluate(JUMP_PRESS, [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
        assert fm.get_attribute("data-pans-undone") == "1", fm.get_attribute("data-last-click")
        deadline = time.monotonic() + 120  # one kernel round trip; slow on a loaded machine
        while True:
            state = _read_state(state_file)
            if state and state["selection"] == [0] and state["center"] == 0:
                break
            assert time.monotonic() < deadline, (
                f"no selection [0] in Python after clicking the map centre: {state}; "
                f"the map's last click: {fm.get_attribute('data-last-click')}, its selection "
                f"{fm.get_attribute('data-selection')}; page errors: {guard.page_errors}; "
                f"console: {guard.console[-10:]}; canvas box {canvas.bounding_box()}; "
                f"at the centre: {_element_at_centre(page, canvas)}"
            )
            time.sleep(0.25)
        assert state == {"selection": [0], "center": 0}, state

        # the Neighborhood's DOM re-centred on the clicked feature
        page.locator(f'{NB} [data-center="true"][data-id="0"]').wait_for(timeout=30_000)
        assert nb.locator('[data-center="true"]').count() == 1
        assert not guard.page_errors, guard.page_errors
        guard.assert_offline()

        # the widgets follow JupyterLab's theme: switch to the dark theme and back
        light = _widget_colours(page)
        assert all(_luminance(c["color"]) < 0.4 < _luminance(c["background"])
                   for c in light.values()), light
        _set_theme(page, "JupyterLab Dark")
        page.wait_for_function(
            f"() => getComputedStyle(document.querySelector('{FM} ')).color !== "
            f"{json.dumps(light['map']['color'])}", timeout=30_000)
        dark = _widget_colours(page)
        assert all(_luminance(c["color"]) > 0.6 > 0.4 > _luminance(c["background"])
                   for c in dark.values()), dark
        _assert_map_drawn(page, fm)  # still drawn after the theme change
        _set_theme(page, "JupyterLab Light")
        guard.assert_offline()
    finally:
        guard.context.close()
    guard.assert_offline()


def test_executed_notebook_exports_offline(
    jupyter_home: Path, static_server: StaticServer, offline: OfflinePage
) -> None:
    root = static_server.root / "widgets-export"
    root.mkdir(exist_ok=True)
    nbformat.write(widgets_notebook(N_POINTS), root / "widgets.ipynb")
    env = jupyter_env(jupyter_home)
    nbconvert(["--to", "notebook", "--execute", "--ExecutePreprocessor.store_widget_state=True",
               "--ExecutePreprocessor.timeout=600", "--output", "widgets.executed.ipynb",
               "widgets.ipynb"], env=env, cwd=root)
    executed = nbformat.read(root / "widgets.executed.ipynb", as_version=4)
    saved = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    names = sorted(v["state"].get("_anywidget_id", "") for v in saved.values()
                   if v.get("model_module") == "anywidget")
    assert len(names) == 3, names
    nbconvert(["--to", "wb-html", "widgets.executed.ipynb"], env=env, cwd=root)
    html_path = root / "widgets.executed.html"
    html = html_path.read_text(encoding="utf-8")
    assert external_references(html) == []
    assert html.count("window.__wbStatic.mount(") == 3

    page = offline.page
    page.goto(static_server.url_for(html_path))
    fm = _wait_rendered(page, FM, 120_000, offline)
    views = page.locator("[data-wb-model-id]")
    assert views.count() == 3
    assert [views.nth(i).get_attribute("data-wb-static") for i in range(3)] == ["1"] * 3
    assert page.locator(f"[data-wb-model-id] {FM}, [data-wb-model-id]{FM}").count() == 1
    assert fm.get_attribute("data-points") == str(N_POINTS)
    assert float(fm.get_attribute("data-first-draw-ms") or "nan") > 0
    _assert_map_drawn(page, fm)
    nb = _wait_rendered(page, NB, 30_000, offline)
    assert nb.locator('[data-center="true"]').get_attribute("data-id") == str(INITIAL_CENTER)
    _wait_rendered(page, PP, 30_000, offline)
    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()


@pytest.fixture(scope="module", autouse=True)
def front_end_built() -> None:
    require_front_end()
