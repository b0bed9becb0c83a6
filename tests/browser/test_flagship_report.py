"""The flagship run's report, opened offline in Chromium, shows its charts and live widgets.

``workbench.runs.run`` executes ``notebooks/alignment_audit.ipynb`` on the small organism (in the
test session's private cache) into a run directory; its ``report.html`` is served from
localhost and opened with every request off the machine blocked and recorded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from _browser import OfflinePage, StaticServer
from _pixels import non_background_fraction

from workbench.record import verify
from workbench.runs import run

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SMALL = {"organism": "small", "steps": 30, "n_examples": 200, "n_prompts": 40, "n_boot": 50,
         "n_eval": 40, "samples": 4, "n_random": 2}


def test_flagship_report_renders_offline(
    cache_dir: Path, tmp_path: Path, static_server: StaticServer, offline: OfflinePage
) -> None:
    info = run(REPO / "notebooks" / "alignment_audit.ipynb", SMALL, runs_root=tmp_path / "runs",
               progress=False)
    assert info.ok, info.summary()
    run_dir = Path(str(info.run_dir))
    assert verify(run_dir / "record.json").ok
    site = static_server.root / "flagship"
    shutil.copytree(run_dir, site)
    page: Any = offline.page
    page.goto(static_server.url_for(site / "report.html"))

    # the header: title, parameters and the fingerprints of the record
    header = page.locator("header.wb-report-header")
    assert "Alignment audit" in header.inner_text()
    assert "n_examples" in header.inner_text()
    record = json.loads((run_dir / "record.json").read_text())
    assert record["subject"]["fingerprint"][:12] in header.inner_text()

    # every widget rendered from its saved state, with no kernel
    views = page.locator("[data-wb-model-id]")
    assert views.count() == 3
    for i in range(3):
        view = views.nth(i)
        view.locator('[data-rendered="1"]').first.wait_for(timeout=60_000)
        assert view.get_attribute("data-wb-static") == "1"
    canvas = page.locator('[data-testid="wb-feature-map"] canvas').first
    assert non_background_fraction(canvas.screenshot(), page) > 0.001
    assert page.locator('[data-testid="wb-patch-preview"]').get_attribute("data-prompts") == "4"

    # the altair charts are inline PNGs that decoded
    loaded = page.evaluate("""() => [...document.images]
        .filter(im => im.src.startsWith('data:image/png') && im.naturalWidth > 0).length""")
    assert loaded >= 4, loaded
    assert not offline.page_errors, offline.page_errors
    offline.assert_offline()
