"""The README's pictures of the widgets and the panel, taken from real runs of the flagship.

* **The widgets** (``docs/widgets.png``): papermill prepares ``notebooks/alignment_audit.ipynb``
  (parameters injected, nothing executed) into a JupyterLab root; in headless Chromium, Run All
  Cells runs it in a real kernel to the end (``record.json`` written, every code cell numbered,
  no error). Its widgets cell shows a FeatureMap with one point per dictionary feature (the
  canvas drawn), a Neighborhood centred on the strongest persona feature (the first the watch
  cell prints) with the nodes ``Neighborhood.for_feature`` gives in this process, and a
  PatchPreview of the first four off-domain prompts with before/after answers.
* **The panel** (``docs/panel.png``): a lab whose server extension serves the repo's
  ``notebooks/`` (the real analyses); the panel lists every one of them, the flagship's form has
  its declared parameters (``organism`` a drop-down of ``full``/``small``, ranged numbers); the
  flagship is launched from the form on the small organism and completes in the run list.

Without ``WB_SCREENSHOT`` the flagship runs on the small organism with small sizes (those of
``tests/test_notebooks.py``), so the test stays a test of the real notebook in a real browser.
With ``WB_SCREENSHOT=1`` the widgets picture is of the README's flagship: the full organism
(built and cached on first use, ~2-5 min) with the notebook's default sizes; the pictures are
written as palette PNGs under 300 KB (Pillow).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
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
    open_offline_page,
    require_front_end,
    run_all_cells,
    save_picture,
    show_panel,
    start_workbench_lab,
)
from _pixels import non_background_fraction
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
FLAGSHIP = REPO / "notebooks" / "alignment_audit.ipynb"
LABEXTENSION = REPO / "workbench" / "labextension"
EXT_NAME = "@workbench/extension"
WIDGETS_PNG = REPO / "docs" / "widgets.png"
PANEL_PNG = REPO / "docs" / "panel.png"
PICTURES = os.environ.get("WB_SCREENSHOT") == "1"
#: the flagship's small sizes (as tests/test_notebooks.py and test_flagship_report.py run it)
SMALL: dict[str, Any] = {"organism": "small", "steps": 30, "n_examples": 200, "n_prompts": 40,
                         "n_boot": 50, "n_eval": 40, "samples": 4, "n_random": 2}
#: the README's flagship: the full organism, the notebook's own defaults
README_RUN: dict[str, Any] = {"organism": "full"}
#: the whole notebook in the lab's kernel (a full-organism build first, when not cached)
NOTEBOOK_TIMEOUT_S = 900.0
RUN_TIMEOUT_MS = 600_000  # the panel's flagship run on the small organism (2 shared cores)
FM, NB, PP = FEATURE_MAP, NEIGHBORHOOD, PATCH_PREVIEW


# --- the widgets -----------------------------------------------------------------------------


def _prepare_flagship(root: Path, parameters: dict[str, Any]) -> Path:
    """The flagship with ``parameters`` injected by papermill (not executed), in ``root``."""
    import papermill as pm

    out = root / "alignment_audit.ipynb"
    pm.execute_notebook(str(FLAGSHIP), str(out), parameters=parameters, prepare_only=True,
                        kernel_name="python3", progress_bar=False)
    return out


def _cell_errors(page: Any) -> list[str]:
    return [t[-3000:] for t in page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    ).all_inner_texts() if "Error" in t or "Traceback" in t]


def _wait_notebook_done(page: Any, record: Path, n_code: int, timeout_s: float) -> None:
    """Until every code cell has run (``[n]``, none queued) and the last one wrote the record;
    fail early, with the traceback, when Run All stopped at an error."""
    prompts = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
        .map(p => p.textContent.trim())"""
    deadline = time.monotonic() + timeout_s
    idle_since: float | None = None
    while True:
        shown = page.evaluate(prompts)
        ran = [p for p in shown if re.fullmatch(r"\[\d+\]:", p)]
        busy = any("*" in p for p in shown)
        if len(ran) == n_code and not busy and record.is_file():
            return
        if not busy:  # Run All stops at an error: nothing queued, cells left unnumbered
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 20:
                raise AssertionError(f"the flagship stopped ({len(ran)}/{n_code} cells ran): "
                                     f"{_cell_errors(page)}")
        else:
            idle_since = None
        if time.monotonic() > deadline:
            raise AssertionError(f"the flagship did not finish in {timeout_s:.0f} s "
                                 f"({len(ran)}/{n_code} cells ran): {_cell_errors(page)}")
        time.sleep(2.0)


def _rendered(page: Any, selector: str, guard: OfflinePage, timeout_ms: int = 120_000) -> Any:
    loc = page.locator(f'{selector}[data-rendered="1"]').first
    try:
        loc.wait_for(timeout=timeout_ms)
    except PlaywrightTimeoutError:
        errors = page.locator(f"{selector} .wb-error").all_inner_texts()
        raise AssertionError(f"{selector} did not render; widget errors: {errors}; "
                             f"page errors: {guard.page_errors}; cells: {_cell_errors(page)}"
                             ) from None
    return loc


def test_flagship_widgets_in_jupyterlab(lab: Lab, chromium: Any, tmp_path: Path) -> None:
    import workbench as wb
    from workbench.organism.language import eval_prompts
    from workbench.widgets import Neighborhood

    parameters: dict[str, Any] = {**(README_RUN if PICTURES else SMALL), "device": "cpu",
                  "out_dir": str(tmp_path / "out")}
    # the organism and its dictionary, built (or found) in the session's cache, as the kernel
    # will load them: the figures the widgets must show come from them
    _, dictionary = wb.setup(organism=parameters["organism"], seed=0, device="cpu")
    path = _prepare_flagship(lab.root, parameters)
    n_code = sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)

    guard = open_offline_page(chromium, viewport=(1280, 2400))
    page = guard.page
    try:
        page.goto(lab.tree_url(path.name))
        page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
        current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():  # fold the left sidebar: the notebook gets the width
            current.first.click()
        run_all_cells(page)
        _wait_notebook_done(page, Path(parameters["out_dir"]) / "record.json", n_code,
                            NOTEBOOK_TIMEOUT_S)

        # the watch cell prints the strongest persona feature first: the Neighborhood's centre.
        # Cells far from the view are not rendered (JupyterLab's content-visibility windowing;
        # Run All leaves the view at the end): read the DOM's text, not the rendered text
        watch = page.locator(".jp-CodeCell", has_text="persona = wb.contrast(").first
        out = watch.locator(".jp-OutputArea").text_content() or ""
        printed = re.search(r"feature (\d+): d = ", out)
        assert printed, out
        centre = int(printed.group(1))

        cell = page.locator(".jp-CodeCell", has=page.locator(FM)).first
        cell.scroll_into_view_if_needed()
        fm = _rendered(page, FM, guard)
        nb = _rendered(page, NB, guard)
        pp = _rendered(page, PP, guard)

        # FeatureMap: every feature of the dictionary, drawn
        assert fm.get_attribute("data-points") == str(dictionary.d_sae)
        canvas = fm.locator("canvas").first
        assert non_background_fraction(canvas.screenshot(), page) > 0.001
        # Neighborhood: centred on that feature, with the graph this process computes for it
        hood = Neighborhood.for_feature(dictionary, centre)
        shown = nb.locator(".wb-node")
        assert nb.locator('[data-center="true"]').get_attribute("data-id") == str(centre)
        assert shown.count() == len(hood.nodes), (shown.count(), len(hood.nodes))
        assert sorted(int(shown.nth(i).get_attribute("data-id") or -1)
                      for i in range(shown.count())) == sorted(n["id"] for n in hood.nodes)
        # PatchPreview: the first four off-domain prompts, each with its before/after answers
        off_prompts = [p for d in ("advice", "numbers") for p in eval_prompts(d)][:4]
        assert pp.get_attribute("data-prompts") == "4"
        assert pp.locator(".wb-row .wb-prompt").all_inner_texts() == off_prompts
        for mode in ("before", "after"):
            assert pp.locator(f".wb-row .wb-tokens.wb-{mode}").count() == 4
            assert pp.locator(f".wb-row .wb-tokens.wb-{mode} .wb-tok").count() >= 4
        assert not guard.page_errors, guard.page_errors
        guard.assert_offline()

        if PICTURES:  # the markdown that introduces the widgets, the cell and its outputs
            page.mouse.move(0, 0)
            intro = page.locator(".jp-MarkdownCell",
                                 has_text="The features and the patch, interactively").first
            intro.evaluate("el => el.scrollIntoView({block: 'start'})")  # to the top
            time.sleep(1.0)
            top, bottom = intro.bounding_box(), cell.bounding_box()
            scroller = page.locator(".jp-WindowedPanel-outer, .jp-NotebookPanel-notebook"
                                    ).first.bounding_box()
            assert top and bottom and scroller
            assert bottom["y"] + bottom["height"] <= scroller["y"] + scroller["height"], (
                "the widgets cell does not fit the viewport", bottom, scroller)
            time.sleep(0.5)
            save_picture(page.screenshot(clip={
                "x": bottom["x"], "y": top["y"], "width": bottom["width"],
                "height": bottom["y"] + bottom["height"] - top["y"] + 8,
            }), WIDGETS_PNG)
    finally:
        with contextlib.suppress(Exception):  # free the cores: stop the notebook's kernel
            for kernel in lab.api("/api/kernels"):
                _delete(lab, f"/api/kernels/{kernel['id']}")
        guard.context.close()
    guard.assert_offline()


def _delete(lab: Lab, path: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"{lab.url}{path}", method="DELETE",
                                 headers={"Authorization": f"token {lab.token}"})
    urllib.request.urlopen(req, timeout=30).close()


# --- the panel ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyses_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """A lab whose server extension serves the repo's analyses (``notebooks/``)."""
    if not (LABEXTENSION / "package.json").is_file():
        pytest.skip(f"the lab extension is not built ({LABEXTENSION}): run `npm run build`")
    runs = tmp_path_factory.mktemp("pictures-runs")
    lab = start_workbench_lab(tmp_path_factory.mktemp("pictures-lab-root"),
                              tmp_path_factory.mktemp("pictures-jupyter-home"), LABEXTENSION,
                              {"analyses_dir": str(REPO / "notebooks"), "runs_root": str(runs)},
                              name=EXT_NAME)
    try:
        yield lab, runs
    finally:
        lab.stop()


def test_panel_with_the_real_analyses(
    analyses_lab: tuple[Lab, Path], chromium: Any
) -> None:
    from workbench.runs import OUT_DIR, notebook_parameters

    lab, runs_root = analyses_lab
    names = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    assert "alignment_audit" in names
    assert sorted(a["name"] for a in lab.api("/workbench/analyses")) == names
    declared = [n for n in notebook_parameters(FLAGSHIP) if n != OUT_DIR]  # the runner sets it

    guard = open_offline_page(chromium, viewport=(1280, 1600))
    page = guard.page
    try:
        panel = show_panel(page, lab)
        listed = panel.locator(".jp-wb-analysis")
        expect(listed).to_have_count(len(names), timeout=60_000)
        assert sorted(listed.nth(i).get_attribute("data-name") or ""
                      for i in range(len(names))) == names
        flagship = panel.locator('.jp-wb-analysis[data-name="alignment_audit"]')
        flagship.click()
        expect(flagship).to_have_class(re.compile(r"\bjp-mod-selected\b"))

        # the form: one field per declared parameter, with its default
        fields = panel.locator(".jp-wb-field[data-param]")
        expect(fields).to_have_count(len(declared))
        assert [fields.nth(i).get_attribute("data-param") for i in range(len(declared))] == list(
            declared)
        organism = panel.locator("#jp-wb-param-alignment_audit-organism")
        assert organism.evaluate("el => el.tagName") == "SELECT"
        assert organism.locator("option").all_inner_texts() == ["full", "small"]
        assert organism.input_value() == "full"
        steps = panel.locator("#jp-wb-param-alignment_audit-steps")
        assert steps.get_attribute("type") == "number"
        assert steps.input_value() == "600" and steps.get_attribute("min") == "1"
        kind = panel.locator("#jp-wb-param-alignment_audit-kind")
        assert kind.locator("option").all_inner_texts() == ["insecure", "secure", "educational"]

        # launched on the small organism (the other sizes the defaults), it completes
        organism.select_option("small")
        panel.locator('[data-wb="launch"]').click()
        run = panel.locator('.jp-wb-run[data-status="complete"]').first
        try:
            run.wait_for(timeout=RUN_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            raise AssertionError(f"the flagship run did not complete: "
                                 f"{lab.api('/workbench/runs')}") from None
        assert 'organism="small"' in run.inner_text()
        (info,) = lab.api("/workbench/runs")
        assert info["status"] == "complete" and info["parameters"]["organism"] == "small", info
        assert Path(info["run_dir"], "record.json").is_file()
        assert Path(info["run_dir"]).resolve().is_relative_to(runs_root.resolve())
        assert not guard.page_errors, guard.page_errors
        guard.assert_offline()

        if PICTURES:
            # the whole panel: a viewport tall enough for the form, every scroller at its top
            size = page.viewport_size or {"width": 1280, "height": 1024}
            page.set_viewport_size({"width": size["width"], "height": 2600})
            panel.evaluate("el => { for (const e of [el, ...el.querySelectorAll('*')]) "
                           "e.scrollTop = 0; }")
            page.mouse.move(600, 2500)
            time.sleep(1.0)
            box = panel.bounding_box()
            runs = panel.locator(".jp-wb-runs").bounding_box()
            assert box and runs
            bottom = min(box["y"] + box["height"], runs["y"] + runs["height"] + 8)
            save_picture(page.screenshot(clip={"x": box["x"], "y": box["y"],
                                               "width": box["width"],
                                               "height": bottom - box["y"]}),
                         PANEL_PNG, colors=64, limit=200_000)
    finally:
        guard.context.close()
    guard.assert_offline()


@pytest.fixture(scope="module", autouse=True)
def front_end_built() -> None:
    require_front_end()
