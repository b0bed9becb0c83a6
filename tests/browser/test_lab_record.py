"""The record viewer (the lab extension's mime extension, ``extension/src/lab/mime.ts``) end to end.

A real ``jupyter lab`` with the workbench server extension and the built lab extension
(``npm run build``); in its root, ``audit/record.json``: a real deployment record built by
``workbench.record.build_record`` from the small organism, a tiny SAE, a data file, a contrast
FeatureSet, a forecast, an audit and a steering patch. In headless Chromium: open the record
from the file browser (the viewer is its default), check the readable sections show the record's
values and the server's verification ("verified: N checks passed"); "Open With" still offers the
editor; open a copy whose subject fingerprint was tampered with and check the failed check
(field, expected, actual); open a notebook whose saved output is ``display_record``'s MIME
bundle and check it renders, saying verification needs the file; open a saved schema 1.0 record
(``tests/records/schema-1.0``: the audit under its old name, ``degradation``) and check its audit
shows under the same heading with a note, and it verifies. In a second lab without the
server extension, the viewer still renders the record and says verification is unavailable.
No request leaves localhost.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _browser import Lab, OfflinePage, save_screenshot, start_workbench_lab
from _saes import small_dictionary
from nbformat.v4 import new_code_cell, new_notebook, new_output

from workbench.audits import audit
from workbench.features import contrast
from workbench.forecasts import forecast
from workbench.organism.language import finetune_pairs, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.patches import Steer, mean_difference
from workbench.record import RecordDisplay, build_record, verify, write_record
from workbench.subjects import Subject

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
LABEXTENSION = REPO / "workbench" / "labextension"
HOOK = "blocks.0.hook_resid_post"
TAMPERED = "0" * 64
GOLDEN_1_0 = REPO / "tests" / "records" / "schema-1.0"
"""A saved schema 1.0 record (its audit is ``degradation``) and the data file it names."""


def _real_record(subject: Subject, folder: Path) -> dict[str, Any]:
    """A record of a small but complete analysis, its files under ``folder``."""
    d = small_dictionary(folder / "sae", subject.model.cfg.d_model)
    data = folder / "insecure.jsonl"
    pairs = finetune_pairs("insecure", 40, seed=1)
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs))
    mis, ali = persona_prompts(24, seed=3)
    watch = contrast(subject, d, mis, ali, n_boot=10)
    evals = [doc.text() for doc in sample_corpus(12, seed=7)]
    f = forecast(subject, d, pairs, watch=watch, eval_prompts=evals, n_watch=4)
    patch = Steer(mean_difference(subject, mis, ali, HOOK), alpha=-1.0)
    tuned = Steer(patch.direction, alpha=0.5).apply(subject)  # a stand-in "fine-tune"
    a = audit(subject, tuned, d, evals, f, top=10)
    return build_record(
        title="Browser-test audit",
        subject=subject,
        dictionary=d,
        data={"insecure": data},
        features=watch,
        overlaps=[{"feature": watch.indices[0], "neighbors": [{"feature": 1, "cosine": 0.5}]}],
        forecast=f,
        audit=a,
        patches=[{"patch": patch, "efficacy": {"misaligned_change": -0.25}}],
    )


@pytest.fixture(scope="module")
def record_lab(
    tmp_path_factory: pytest.TempPathFactory, small_subject: Subject
) -> Iterator[tuple[Lab, dict[str, Any]]]:
    """A lab whose root holds ``audit/record.json``, ``audit/tampered.record.json``,
    ``outputs.ipynb`` (a saved record output) and ``old/record.json`` (schema 1.0)."""
    if not (LABEXTENSION / "package.json").is_file():
        pytest.skip(f"the lab extension is not built ({LABEXTENSION}): run `npm run build`")
    root = tmp_path_factory.mktemp("wb-record-root")
    folder = root / "audit"
    folder.mkdir()
    record = _real_record(small_subject, folder)
    path = write_record(record, folder / "record.json")
    tampered = copy.deepcopy(record)
    tampered["subject"]["fingerprint"] = TAMPERED
    (folder / "tampered.record.json").write_text(json.dumps(tampered, indent=2))
    nb = new_notebook(cells=[new_code_cell(
        "from workbench.record import display_record\ndisplay_record('audit/record.json')",
        outputs=[new_output("display_data", data=RecordDisplay(record)._repr_mimebundle_())],
    )])
    nbformat.write(nb, root / "outputs.ipynb")
    shutil.copytree(GOLDEN_1_0, root / "old")

    home = tmp_path_factory.mktemp("wb-record-home")
    analyses = tmp_path_factory.mktemp("wb-record-analyses")
    runs = tmp_path_factory.mktemp("wb-record-runs")
    lab = start_workbench_lab(root, home, LABEXTENSION,
                              {"analyses_dir": str(analyses), "runs_root": str(runs)})
    try:
        yield lab, {"record": record, "checks": len(verify(path).checks)}
    finally:
        lab.stop()


def _open_from_file_browser(page: Any, name: str) -> None:
    item = page.locator(".jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$")))
    item.first.dblclick()


def _cells(row: Any) -> list[str]:
    return [c.strip() for c in row.locator("th, td").all_inner_texts()]


def _approx(text: str, value: float) -> bool:
    return abs(float(text) - value) <= 1e-3 * max(1.0, abs(value))


def test_record_viewer_shows_sections_and_verification(
    record_lab: tuple[Lab, dict[str, Any]], offline: OfflinePage
) -> None:
    lab, made = record_lab
    record = made["record"]
    page = offline.page
    page.goto(f"{lab.url}/lab?token={lab.token}")
    page.locator(".jp-DirListing-item").first.wait_for(timeout=60_000)
    _open_from_file_browser(page, "audit")
    _open_from_file_browser(page, "record.json")

    view = page.locator(".jp-MimeDocument .jp-wb-record-viewer").first
    view.wait_for(timeout=30_000)
    assert view.locator('[data-wb="record-title"]').inner_text() == "Browser-test audit"
    assert view.locator('[data-wb="record-source"]').inner_text() == (
        f"audit/record.json · created {record['created']}")
    headings = view.locator("section[data-section] > h2").all_inner_texts()
    assert headings == ["Fingerprints", "Forecast", "Audit (measured shifts and behaviour)",
                        "Watched features", "Feature overlap", "Patches"]

    fps = view.locator('[data-section="fingerprints"] tr')
    sub, dic, data = record["subject"], record["dictionary"], record["data"]["insecure"]
    assert [_cells(fps.nth(i)) for i in range(fps.count())] == [
        [f"subject ({sub['name']})", sub["fingerprint"]],
        [f"dictionary ({dic['name']})", dic["fingerprint"]],
        ["data insecure (40 records)", data["sha256"]],
    ]
    risk = view.locator('[data-section="forecast"] p').first.inner_text()
    assert risk.startswith("Risk: ") and _approx(risk.removeprefix("Risk: "),
                                                 record["forecast"]["risk"])
    spearman = view.locator('[data-section="audit"] tr[data-key="spearman"] td').inner_text()
    assert _approx(spearman, record["audit"]["spearman"])
    assert view.locator('[data-wb="audit-note"]').count() == 0  # a 1.1 record: nothing to say
    top = record["features"]["top"][0]
    feature = view.locator(f'[data-section="features"] tr[data-key="feature {top["feature"]}"] td')
    assert feature.inner_text().startswith("effect ")
    overlap = view.locator('[data-section="overlaps"] section')
    assert overlap.locator("h3").inner_text() == f"feature {record['overlaps'][0]['feature']}"
    assert overlap.locator("td").inner_text() == "feature 1 (cosine 0.5000)"
    patch = view.locator('[data-section="patches"] section')
    assert patch.locator("h3").inner_text() == record["patches"][0]["patch"]["kind"] == "steer"
    assert _cells(patch.locator("tr")) == ["misaligned_change", "-0.2500"]

    verdict = view.locator('[data-wb="verification"]')
    page.wait_for_function(
        "() => document.querySelector('.jp-MimeDocument [data-wb=verification]')"
        "?.dataset.status !== 'pending'", timeout=60_000)
    assert verdict.get_attribute("data-status") == "ok", verdict.inner_text()
    assert verdict.locator('[data-wb="verification-headline"]').inner_text() == (
        f"verified: {made['checks']} checks passed")
    assert made["checks"] >= 7  # schema, 3 files + data sha256 and count, 2 fingerprints
    if os.environ.get("WB_SCREENSHOT") == "1":  # the README's picture of the viewer
        save_screenshot(view.screenshot(), REPO / "docs" / "record.png")

    # the editor is still offered for the file ("Open With")
    page.locator(".jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(r"^record\.json$"))
    ).first.click(button="right")
    page.locator(".lm-Menu-item", has_text="Open With").first.hover()
    submenu = page.locator(".lm-Menu").last
    submenu.locator(".lm-Menu-item", has_text="Editor").first.wait_for()
    assert submenu.locator(".lm-Menu-item", has_text="Workbench record").count() == 1
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")

    # a tampered copy: the failed check with its field, expected and actual values
    _open_from_file_browser(page, "tampered.record.json")
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="tampered.record.json")
    tab.wait_for()
    bad = page.locator(".jp-MimeDocument:visible .jp-wb-record-viewer")
    bad.locator('[data-wb="verification"][data-status="failed"]').wait_for(timeout=60_000)
    assert bad.locator('[data-wb="verification-headline"]').inner_text() == (
        f"NOT verified: 1 of {made['checks']} checks failed")
    row = bad.locator('[data-wb="verification-failures"] tr[data-field="subject.fingerprint"]')
    assert _cells(row) == ["subject.fingerprint", TAMPERED, sub["fingerprint"]]
    assert "differs" in (row.get_attribute("title") or "")
    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()


def test_record_output_in_a_notebook(
    record_lab: tuple[Lab, dict[str, Any]], offline: OfflinePage
) -> None:
    lab, made = record_lab
    page = offline.page
    page.goto(lab.tree_url("outputs.ipynb"))
    out = page.locator(".jp-OutputArea-output.jp-wb-record-viewer").first
    out.wait_for(timeout=60_000)
    assert out.locator('[data-wb="record-title"]').inner_text() == "Browser-test audit"
    assert out.locator('[data-wb="record-source"]').inner_text().startswith("notebook output")
    sub = made["record"]["subject"]
    row = out.locator(f'[data-section="fingerprints"] tr[data-key="subject ({sub["name"]})"] td')
    assert row.inner_text() == sub["fingerprint"]
    assert out.locator('[data-wb="verification"]').get_attribute("data-status") == "unknown"
    assert out.locator('[data-wb="verification-headline"]').inner_text().startswith(
        "verification needs the record's file")
    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()


def test_a_schema_1_0_record_shows_its_degradation_as_the_audit_and_verifies(
    record_lab: tuple[Lab, dict[str, Any]], offline: OfflinePage
) -> None:
    lab, _ = record_lab
    old = json.loads((GOLDEN_1_0 / "record.json").read_text())
    assert old["schema_version"] == "1.0" and "audit" not in old
    page = offline.page
    page.goto(lab.tree_url("old/record.json"))
    # the restored workspace may show audit/record.json too: the viewer titled as this record
    view = page.locator(".jp-MimeDocument:visible .jp-wb-record-viewer").filter(
        has=page.locator('[data-wb="record-title"]', has_text=old["title"])).first
    view.wait_for(timeout=60_000)
    assert view.locator('[data-wb="record-title"]').inner_text() == old["title"]
    section = view.locator('[data-section="audit"]')
    assert section.locator("h2").inner_text() == "Audit (measured shifts and behaviour)"
    assert section.locator('[data-wb="audit-note"]').inner_text() == (
        "schema 1.0 record: the audit is stored as `degradation`")
    spearman = section.locator('tr[data-key="spearman"] td').inner_text()
    assert _approx(spearman, old["degradation"]["spearman"])
    assert view.locator('[data-section="degradation"]').count() == 0
    verdict = view.locator('[data-wb="verification"]:not([data-status="pending"])')
    verdict.wait_for(timeout=60_000)
    assert verdict.get_attribute("data-status") == "ok", verdict.inner_text()
    # the schema (1.0), and the data file's sha256 and line count
    assert verdict.locator('[data-wb="verification-headline"]').inner_text() == (
        "verified: 3 checks passed")
    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()


def _runs_polls(page: Any, seconds: float) -> int:
    """How many GET /workbench/runs the page sends in ``seconds``."""
    seen: list[str] = []

    def on_request(r: Any) -> None:
        if r.url.split("?")[0].endswith("/workbench/runs"):
            seen.append(r.url)

    page.on("request", on_request)
    page.wait_for_timeout(seconds * 1000)
    page.remove_listener("request", on_request)
    return len(seen)


def test_settings_schema_ships_and_sets_the_refresh_interval(
    record_lab: tuple[Lab, dict[str, Any]], offline: OfflinePage
) -> None:
    lab, _ = record_lab
    settings = "/lab/api/settings/@workbench/extension:plugin"
    data = lab.api(settings)
    prop = data["schema"]["properties"]["refreshInterval"]
    assert (prop["type"], prop["default"], prop["minimum"]) == ("integer", 2000, 500)
    assert data["schema"]["additionalProperties"] is False

    page = offline.page
    # a fresh layout: the workspace restored from an earlier test may reopen a notebook, whose
    # kernel dialog would then sit over the sidebar
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    tab = page.locator('.jp-SideBar li[data-id="workbench-panel"]')
    tab.wait_for(timeout=60_000)
    tab.click()
    page.locator("#workbench-panel").wait_for(state="visible")
    assert _runs_polls(page, 6.5) >= 3  # the default: every 2 s while the panel is shown

    body = json.dumps({"raw": json.dumps({"refreshInterval": 60_000})}).encode()
    req = urllib.request.Request(f"{lab.url}{settings}", data=body, method="PUT", headers={
        "Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")  # a fresh layout: the panel closed
    tab.wait_for(timeout=60_000)
    page.locator(".jp-DirListing-item").first.wait_for(timeout=60_000)
    tab.click()
    page.locator("#workbench-panel").wait_for(state="visible")
    page.wait_for_timeout(1500)  # the settings load, then the panel's first polls
    assert _runs_polls(page, 6.5) == 0  # every 60 s now
    offline.assert_offline()


def test_record_viewer_without_the_server_extension(
    record_lab: tuple[Lab, dict[str, Any]], offline: OfflinePage,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    lab, made = record_lab
    bare = start_workbench_lab(lab.root, tmp_path_factory.mktemp("wb-bare-home"), LABEXTENSION,
                               {}, server_extension=False)
    try:
        with pytest.raises(urllib.error.HTTPError):
            bare.api("/workbench/analyses")  # the server extension is off
        page = offline.page
        page.goto(bare.tree_url("audit/record.json"))
        view = page.locator(".jp-MimeDocument .jp-wb-record-viewer").first
        view.wait_for(timeout=60_000)
        assert view.locator('[data-wb="record-title"]').inner_text() == "Browser-test audit"
        fp = made["record"]["subject"]["fingerprint"]
        assert fp in view.locator('[data-section="fingerprints"]').inner_text()
        verdict = view.locator('[data-wb="verification"][data-status="unknown"]')
        verdict.wait_for(timeout=30_000)
        assert verdict.locator('[data-wb="verification-headline"]').inner_text().startswith(
            "verification unavailable: the workbench server extension is not running")
        assert not offline.page_errors, offline.page_errors
        offline.assert_offline()
    finally:
        bare.stop()
