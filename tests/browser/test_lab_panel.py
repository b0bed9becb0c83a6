"""The Workbench panel (the prebuilt JupyterLab extension of ``extension/src/lab``) end to end.

A real ``jupyter lab`` (private Jupyter dirs) with the workbench server extension enabled, its
analyses folder a temp folder holding a toy notebook (``x = 1`` declared ``[range: 1..10]``,
``mode = "double"`` declared ``[choices: "double", "triple"]``, ``out_dir = "."``, a cell
writing ``out.txt``), and the built lab extension (``workbench/labextension``, from
``npm run build``) linked into its private ``JUPYTER_PATH``. In headless Chromium: open the panel
from the command palette and the left sidebar, select the toy; ``mode`` is a drop-down of its
two choices; ``x = 0`` is refused in place and at Launch, naming the range, and nothing is
launched; set ``x`` to 3 and ``mode`` to ``triple``, Launch, wait for the run to complete, open
its report (a Lab tab whose sandboxed iframe shows the report header) and its record (the toy
writes none: the view shows the server's 404 message). Then a sweep: the form's Sweep mode,
``x`` given the values ``4, 5`` (the grid size shown live, a bad value and one outside the
range refused in place), Launch sweep, both runs complete with their ``out.txt``. Then
Cancel: a second notebook (``slow``) sleeps 60 s; launched, cancelled from its run's Cancel
button, it shows as cancelled and the server says so. No request leaves localhost.
The README's picture of the panel is of the real analyses, taken by ``test_readme_pictures.py``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _browser import (
    Lab,
    OfflinePage,
    show_panel,
    start_workbench_lab,
)
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
LABEXTENSION = REPO / "workbench" / "labextension"
EXT_NAME = "@workbench/extension"
RUN_TIMEOUT_MS = 120_000

TOY_PARAMS = ('x = 1  # how many things to count [range: 1..10]\n'
              'mode = "double"  # how to count them [choices: "double", "triple"]\n'
              'out_dir = "."')
TOY_WORK = ('import pathlib\n'
            'pathlib.Path(out_dir, "out.txt").write_text(str(x * (2 if mode == "double" else 3)))')
SLOW_PARAMS = 'seconds = 60  # how long to sleep\nout_dir = "."'
SLOW_WORK = "import time\ntime.sleep(seconds)"
#: how long a cancelled run may take to show as cancelled (the server gives SIGTERM 5 s)
CANCEL_TIMEOUT_MS = 15_000


def _write_nb(path: Path, title: str, params: str, work: str) -> None:
    nb = new_notebook(cells=[
        new_markdown_cell(title),
        new_code_cell(params, metadata={"tags": ["parameters"]}),
        new_code_cell(work),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def _write_toy(folder: Path) -> None:
    _write_nb(folder / "toy.ipynb", "# Toy analysis\n\nCounts things.", TOY_PARAMS, TOY_WORK)
    _write_nb(folder / "slow.ipynb", "# Slow analysis\n\nSleeps.", SLOW_PARAMS, SLOW_WORK)


@pytest.fixture(scope="module")
def workbench_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """A lab of its own: the server extension on a temp analyses folder, the panel linked in."""
    if not (LABEXTENSION / "package.json").is_file():
        pytest.skip(f"the lab extension is not built ({LABEXTENSION}): run `npm run build`")
    home = tmp_path_factory.mktemp("wb-jupyter-home")
    analyses = tmp_path_factory.mktemp("wb-analyses")
    runs = tmp_path_factory.mktemp("wb-runs")
    _write_toy(analyses)
    lab = start_workbench_lab(tmp_path_factory.mktemp("wb-lab-root"), home, LABEXTENSION,
                              {"analyses_dir": str(analyses), "runs_root": str(runs),
                               "shipped_analyses": False},
                              name=EXT_NAME)
    try:
        yield lab, runs
    finally:
        lab.stop()


def _open_palette(page: Any) -> Any:
    """The command palette, by its shortcut or from View -> Activate Command Palette (retried:
    under load the shell can take a while to take keyboard focus and menus)."""
    palette = page.locator(".lm-CommandPalette-input")
    for _ in range(15):
        with contextlib.suppress(Exception):  # focus the shell (the shortcut needs it)
            page.locator("#jp-main-dock-panel").first.click(position={"x": 40, "y": 40},
                                                            timeout=5_000)
        page.keyboard.press("Control+Shift+C")
        try:
            palette.wait_for(state="visible", timeout=3_000)
            return palette
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
        try:
            page.locator(".lm-MenuBar-item", has_text="View").first.click(timeout=5_000)
            item = page.locator(".lm-Menu-item", has_text="Activate Command Palette").first
            item.wait_for(state="visible", timeout=3_000)
            item.click()
            palette.wait_for(state="visible", timeout=3_000)
            return palette
        except Exception:
            page.keyboard.press("Escape")
            time.sleep(1.0)
    raise AssertionError("the command palette did not open (shortcut and View menu tried)")


def test_panel_launches_a_run_and_opens_its_report_and_record(
    workbench_lab: tuple[Lab, Path], offline: OfflinePage
) -> None:
    lab, runs_root = workbench_lab
    assert [a["name"] for a in lab.api("/workbench/analyses")] == ["slow", "toy"]
    page = offline.page
    page.goto(f"{lab.url}/lab?token={lab.token}")

    # the page config lists the prebuilt extension; its plugin adds the sidebar tab
    config = json.loads(page.locator("#jupyter-config-data").text_content() or "{}")
    assert EXT_NAME in [e["name"] for e in config.get("federated_extensions", [])], config
    tab = page.locator('.jp-SideBar li[data-id="workbench-panel"]')
    tab.wait_for(timeout=60_000)

    # the command palette knows the command, and it opens the panel (the shortcut works once
    # the shell has started: retry it until the palette shows)
    palette = _open_palette(page)
    palette.fill("Workbench panel")
    item = page.locator(".lm-CommandPalette-item.lm-mod-active",
                        has_text="Open the Workbench panel")
    item.wait_for()
    # Enter runs the active item: a click can miss it when the palette re-renders under load
    palette.press("Enter")
    panel = page.locator("#workbench-panel")
    panel.wait_for(state="visible")
    tab.click()  # the sidebar tab toggles: the panel collapses ...
    panel.wait_for(state="hidden")
    tab.click()  # ... and comes back
    panel.wait_for(state="visible")

    toy = panel.locator('.jp-wb-analysis[data-name="toy"]')
    toy.click()
    x = panel.locator("#jp-wb-param-toy-x")
    assert x.input_value() == "1"
    assert x.get_attribute("type") == "number"
    assert (x.get_attribute("min"), x.get_attribute("max")) == ("1", "10")
    x_field = panel.locator('.jp-wb-field[data-param="x"]')
    help_text = x_field.locator(".jp-wb-help").inner_text()
    assert help_text == "how many things to count (>= 1 and <= 10)"
    # declared choices: a drop-down of them, the default selected
    mode = panel.locator("#jp-wb-param-toy-mode")
    assert mode.evaluate("el => el.tagName") == "SELECT"
    assert mode.locator("option").all_inner_texts() == ["double", "triple"]
    assert mode.input_value() == "double"
    # a value outside the declared range: named as typed, and Launch sends nothing
    x.fill("0")
    problem = x_field.locator('[data-wb="field-error"]')
    expect(problem).to_have_text("x: must be >= 1 and <= 10, got 0")
    panel.locator('[data-wb="launch"]').click()
    message = panel.locator('[data-wb="launch-message"]')
    expect(message).to_have_text("x: must be >= 1 and <= 10, got 0")
    assert lab.api("/workbench/runs") == []
    x = panel.locator("#jp-wb-param-toy-x")
    x.fill("3")
    assert not panel.locator('.jp-wb-field[data-param="x"] [data-wb="field-error"]').is_visible()
    panel.locator("#jp-wb-param-toy-mode").select_option("triple")
    panel.locator('[data-wb="launch"]').click()

    run = panel.locator('.jp-wb-run[data-status="complete"]').first
    run.wait_for(timeout=RUN_TIMEOUT_MS)
    assert 'mode="triple" x=3' in run.inner_text()
    assert x.input_value() == "3"  # the form keeps what was typed across re-renders
    assert panel.locator("#jp-wb-param-toy-mode").input_value() == "triple"
    assert run.locator('[data-wb="status"]').inner_text().startswith("complete")
    (listed,) = [r for r in lab.api("/workbench/runs") if r["parameters"].get("x") == 3]
    assert listed["status"] == "complete"
    assert listed["parameters"] == {"x": 3, "mode": "triple"}
    assert Path(listed["run_dir"], "out.txt").read_text() == "9"
    assert Path(listed["run_dir"]).resolve().is_relative_to(runs_root.resolve())

    # the report: a main-area tab with a sandboxed iframe on /workbench/runs/<id>/report
    run.locator('[data-wb="open-report"]').click()
    iframe = page.locator(".jp-wb-report iframe")
    iframe.wait_for()
    assert (iframe.get_attribute("src") or "").endswith(f"/workbench/runs/{listed['id']}/report")
    sandbox = iframe.get_attribute("sandbox") or ""
    assert "allow-scripts" in sandbox and "allow-same-origin" not in sandbox
    header = page.frame_locator(".jp-wb-report iframe").locator("[data-wb-report-header]")
    header.wait_for(timeout=30_000)
    assert "Toy analysis" in header.inner_text() or header.inner_text().strip()

    # the record: the toy writes none, so the view shows the server's 404 message
    run.locator('[data-wb="open-record"]').click()
    record = page.locator(".jp-wb-record")
    record.wait_for()
    message = record.locator('[data-wb="record-error"], [data-wb="record-title"]').first
    message.wait_for()
    assert "no record.json" in message.inner_text()
    assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab",
                        has_text=f"Record {listed['id'][:8]}").count() == 1

    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()


def test_panel_sweeps_a_grid_of_two_values(
    workbench_lab: tuple[Lab, Path], offline: OfflinePage
) -> None:
    lab, runs_root = workbench_lab
    page = offline.page
    panel = show_panel(page, lab)
    panel.locator('.jp-wb-analysis[data-name="toy"]').click()
    panel.locator('[data-wb="sweep-toggle"]').check()
    values = panel.locator("#jp-wb-sweep-toy-x")
    assert values.input_value() == "1"  # the single value it starts from
    size = panel.locator('[data-wb="sweep-size"]')
    button = panel.locator('[data-wb="launch-sweep"]')
    assert size.inner_text().startswith("to sweep, give at least one parameter two or more")
    assert button.is_disabled()

    values.fill("4, 4.5")  # checked as typed, naming the field and the value
    assert size.inner_text() == 'x[1]: expected int, got "4.5"'
    assert button.is_disabled()
    values.fill("4, 11")  # outside the declared range
    assert size.inner_text() == "x[1]: must be >= 1 and <= 10, got 11"
    assert button.is_disabled()
    values.fill("4, 5")
    assert size.inner_text() == "2 runs (x: 2)"
    assert button.is_enabled()
    button.click()
    message = panel.locator('[data-wb="launch-message"]')
    message.wait_for()
    assert "2 runs launched" in message.inner_text(), message.inner_text()

    for x in (4, 5):
        row = panel.locator('.jp-wb-run[data-status="complete"]', has_text=f"x={x}").first
        row.wait_for(timeout=RUN_TIMEOUT_MS)
        assert row.locator('[data-wb="status"]').inner_text().startswith("complete")
    swept = {r["parameters"]["x"]: r for r in lab.api("/workbench/runs")
             if r["parameters"].get("x") in (4, 5)}
    assert sorted(swept) == [4, 5]
    for x, info in swept.items():
        assert info["status"] == "complete", info
        run_dir = Path(info["run_dir"])
        assert run_dir.resolve().is_relative_to(runs_root.resolve())
        assert (run_dir / "out.txt").read_text() == str(2 * x)

    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()


def test_panel_cancels_a_running_run(workbench_lab: tuple[Lab, Path], offline: OfflinePage) -> None:
    lab, runs_root = workbench_lab
    page = offline.page
    panel = show_panel(page, lab)
    panel.locator('.jp-wb-analysis[data-name="slow"]').click()
    assert panel.locator("#jp-wb-param-slow-seconds").input_value() == "60"
    panel.locator('[data-wb="launch"]').click()

    row = panel.locator(".jp-wb-run", has_text="slow").first
    row.wait_for(timeout=30_000)
    rid = row.get_attribute("data-run")
    assert rid
    row = panel.locator(f'.jp-wb-run[data-run="{rid}"]')
    badge = row.locator('[data-wb="status"]')
    # wait for papermill to be in the sleeping cell (the kernel is up), then cancel (the run
    # list is re-rendered on every poll: locators, not element handles)
    expect(badge).to_have_text(re.compile(r"^running \d+/\d+ cells$"), timeout=RUN_TIMEOUT_MS)
    assert lab.api(f"/workbench/runs/{rid}")["status"] == "running"
    t0 = time.monotonic()
    row.locator('[data-wb="cancel"]').click()
    expect(badge).to_have_text("cancelled", timeout=CANCEL_TIMEOUT_MS)
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed
    assert row.locator('[data-wb="cancel"]').count() == 0
    assert "cancelled" in row.locator('[data-wb="failure"]').inner_text()

    info = lab.api(f"/workbench/runs/{rid}")
    assert info["status"] == "failed" and "cancelled" in info["error"], info
    on_disk = json.loads((runs_root / rid / "status.json").read_text())
    assert on_disk["status"] == "failed" and "cancelled" in on_disk["error"]
    assert on_disk["parameters"] == {"seconds": 60}

    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()
