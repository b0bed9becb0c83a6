"""FeatureMap in a browser: time to first render, panning at 1M points, saved-notebook growth.

Headless Debian Chromium (``/usr/bin/chromium``, software WebGL through SwiftShader, driven by
Playwright; nothing is downloaded) renders the widget from an *exported static page*
(:func:`workbench.reports.export_html`) served from 127.0.0.1, which isolates the front end
from kernel and JupyterLab start-up. The widget state comes from a ``FeatureMap`` built
in-process and split into binary buffers exactly as ipywidgets sends it (what nbclient saves).
Every request that is not to localhost is aborted and counted (it must stay 0).

* **first render**: the widget's own ``data-first-draw-ms`` (``performance.now()`` from
  ``render()`` to regl-scatterplot's first ``draw`` event) and, next to it, the wall clock from
  navigation start to ``data-rendered="1"`` (includes parsing the page's saved state, decoding
  the base64 buffers and importing the ES module); median of ``--repeats`` fresh pages each,
  for 10k / 100k / 1M points.
* **panning**: a left-button mouse drag across the canvas dispatched in the page for ~1 s (one
  ``mousemove`` per animation frame, as browsers coalesce real input; no driver round-trips),
  while ``requestAnimationFrame`` counts the frames: frames per second, median and longest
  frame time, and whether the drawn image moved. Pannable (the 1M target): >= 10 fps, no frame
  over 500 ms, and the image moved.
* **notebook growth**: ``jupyter nbconvert --to notebook --execute`` (widget state stored) of a
  notebook holding one 100k-point FeatureMap against the same notebook without the widget
  cells; the growth in MB, split into saved widget state and the outputs (the widget's static
  PNG fallback among them).

For scale, the same drag on bare regl-scatterplot (default settings, bundled from
``node_modules`` by the repo's esbuild, skipped without them) shows what the library alone
does on this machine.

Targets (printed next to the numbers): 100k first render < 1 s; 1M < 5 s and pannable; notebook
growth < 2 MB per 100k points. Software WebGL on a shared CPU is the slow end of what users
have; a GPU browser is faster.

Usage: python benchmarks/widgets.py [--sizes 10000 100000 1000000] [--repeats 3] [--skip-notebook]
Needs the dev extra (playwright, nbconvert, ipykernel) and the built front end
(``npm install && npm run build``). Reuses the browser-test helpers in ``tests/browser``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

from _browser import (  # noqa: E402
    CHROMIUM,
    OfflinePage,
    StaticServer,
    jupyter_env,
    launch_chromium,
    open_offline_page,
    start_static_server,
)
from _notebooks import nbconvert, notebook_with_widgets  # noqa: E402
from _widget_notebooks import feature_map_notebook  # noqa: E402

FM = '[data-testid="wb-feature-map"]'
TARGET_FIRST_RENDER_S = {100_000: 1.0, 1_000_000: 5.0}
TARGET_GROWTH_MB_PER_100K = 2.0
MIN_FPS = 10.0
MAX_GAP_MS = 500.0

RENDERED_AT = """
new MutationObserver((records, obs) => {
  for (const r of records) {
    const t = r.target;
    if (t.getAttribute && t.getAttribute("data-rendered") === "1"
        && t.getAttribute("data-testid") === "wb-feature-map") {
      window.__wbRenderedAt = performance.now();
      obs.disconnect();
      return;
    }
  }
}).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-rendered"] });
"""
DRAG = """async ([selector, duration]) => {
  // a left-button drag dispatched in the page, one mousemove per frame (as a browser coalesces
  // real input), with requestAnimationFrame counting the frames it gets
  const canvas = document.querySelector(selector);
  const r = canvas.getBoundingClientRect();
  const x0 = r.left + 0.3 * r.width, y0 = r.top + 0.5 * r.height;
  const dx = 0.4 * r.width, dy = 0.2 * r.height;
  const ev = (type, x, y, buttons) => new MouseEvent(type, {
    clientX: x, clientY: y, screenX: x, screenY: y, button: 0, buttons,
    bubbles: true, cancelable: true, view: window });
  canvas.dispatchEvent(ev("mousemove", x0, y0, 0));
  canvas.dispatchEvent(ev("mousedown", x0, y0, 1));
  const frames = [];
  const t0 = performance.now();
  await new Promise((done) => {
    const tick = (t) => {
      frames.push(t);
      const f = (t - t0) / duration;
      if (f < 1) {
        canvas.dispatchEvent(ev("mousemove", x0 + f * dx, y0 + f * dy, 1));
        requestAnimationFrame(tick);
      } else {
        window.dispatchEvent(ev("mouseup", x0 + dx, y0 + dy, 0));
        done();
      }
    };
    requestAnimationFrame(tick);
  });
  const gaps = frames.slice(1).map((t, i) => t - frames[i]).sort((a, b) => a - b);
  return { frames: frames.length, span: frames[frames.length - 1] - frames[0],
           medianGap: gaps[Math.floor(gaps.length / 2)], maxGap: gaps[gaps.length - 1] };
}"""


def synthetic_coords(n: int, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    # a blobby 2-D cloud (like a projected decoder), not a uniform square
    centres = rng.normal(size=(32, 2)) * 3
    which = rng.integers(0, len(centres), n)
    coords = centres[which] + rng.normal(size=(n, 2))
    values = rng.gamma(2.0, 1.0, n).astype("float32")
    return coords, values


def export_map_page(n: int, server: StaticServer) -> Path:
    """An exported static page holding one FeatureMap of ``n`` points; returns its path."""
    import nbformat

    from workbench.reports import export_html
    from workbench.widgets import FeatureMap

    coords, values = synthetic_coords(n)
    fm = FeatureMap(coords, values, color_by="frequency", title=f"{n:,} points")
    src = server.root / f"map-{n}.ipynb"
    nbformat.write(notebook_with_widgets([fm]), src)
    out = export_html(src, server.root / f"map-{n}.html")
    fm.close()
    return out


REFERENCE_ENTRY = """
import createScatterplot from "regl-scatterplot";
window.startReference = async (n) => {
  const t0 = performance.now();  // like the widget's clock: from before the plot exists
  const canvas = document.querySelector("canvas");
  const sp = createScatterplot({ canvas, width: "auto", height: 420, pointSize: 3 });
  const x = new Float32Array(n), y = new Float32Array(n);
  let seed = 1;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < n; i++) {
    const r = Math.sqrt(rand()), t = 2 * Math.PI * rand();
    x[i] = r * Math.cos(t); y[i] = r * Math.sin(t);
  }
  await sp.draw({ x, y });
  return performance.now() - t0;
};
"""
REFERENCE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>reference</title></head>
<body style="margin:0"><div data-testid="wb-feature-map" style="width:1150px">
<canvas style="width:100%;height:420px"></canvas></div>
<script src="reference.js"></script></body></html>"""


def reference_page(root: Path) -> Path | None:
    """Bare regl-scatterplot (default settings, own renderer) bundled by the repo's esbuild:
    what the library alone does on this machine. None when node_modules lacks either."""
    esbuild = REPO / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists() or not (REPO / "node_modules" / "regl-scatterplot").exists():
        return None
    import os
    import subprocess

    (root / "reference-entry.js").write_text(REFERENCE_ENTRY)
    subprocess.run(
        [str(esbuild), "reference-entry.js", "--bundle", "--format=iife",
         "--log-level=warning", "--outfile=reference.js"],
        cwd=root, check=True, env={**os.environ, "NODE_PATH": str(REPO / "node_modules")},
    )
    page = root / "reference.html"
    page.write_text(REFERENCE_PAGE)
    return page


def reference_run(browser: Any, url: str, n: int, seconds: float = 1.0) -> dict[str, Any]:
    guard = open_offline_page(browser, viewport=(1200, 900))
    try:
        page = guard.page
        page.set_default_timeout(180_000)
        page.goto(url)
        first_ms = page.evaluate("n => window.startReference(n)", n)
        page.wait_for_timeout(500)
        res = page.evaluate(DRAG, [f"{FM} canvas", seconds * 1000])
        guard.assert_offline()
        return {
            "first_draw_s": first_ms / 1000,
            "fps": (res["frames"] - 1) / (res["span"] / 1000) if res["span"] > 0 else 0.0,
            "median_ms": res["medianGap"],
            "max_ms": res["maxGap"],
        }
    finally:
        guard.context.close()


def first_render(browser: Any, url: str) -> dict[str, float]:
    guard = open_offline_page(browser, viewport=(1200, 900))
    try:
        page = guard.page
        page.set_default_timeout(180_000)
        page.add_init_script(RENDERED_AT)
        page.goto(url, wait_until="commit")
        loc = page.locator(f'{FM}[data-rendered="1"]').first
        loc.wait_for(timeout=180_000)
        wall = page.evaluate("() => window.__wbRenderedAt")  # ms since navigation start
        first_draw = float(loc.get_attribute("data-first-draw-ms") or "nan")
        guard.assert_offline()
        return {"first_draw_s": first_draw / 1000, "wall_s": wall / 1000}
    finally:
        guard.context.close()


def pan(browser: Any, url: str, seconds: float = 1.0) -> dict[str, Any]:
    guard: OfflinePage = open_offline_page(browser, viewport=(1200, 900))
    try:
        page = guard.page
        page.set_default_timeout(180_000)
        page.goto(url)
        fm = page.locator(f'{FM}[data-rendered="1"]').first
        fm.wait_for(timeout=180_000)
        canvas = fm.locator("canvas").first
        page.wait_for_timeout(500)
        before = canvas.screenshot()
        res = page.evaluate(DRAG, [f"{FM} canvas", seconds * 1000])
        page.wait_for_timeout(500)
        after = canvas.screenshot()
        guard.assert_offline()
        return {
            "fps": (res["frames"] - 1) / (res["span"] / 1000) if res["span"] > 0 else 0.0,
            "median_ms": res["medianGap"],
            "max_ms": res["maxGap"],
            "moved": before != after,
        }
    finally:
        guard.context.close()


def notebook_growth(n: int) -> dict[str, float]:
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = jupyter_env(root / "jupyter")
        sizes = {}
        for name, with_widget in (("with", True), ("without", False)):
            nbformat.write(feature_map_notebook(n, with_widget=with_widget), root / f"{name}.ipynb")
            nbconvert(["--to", "notebook", "--execute",
                       "--ExecutePreprocessor.store_widget_state=True",
                       "--ExecutePreprocessor.timeout=900",
                       "--output", f"{name}.executed.ipynb", f"{name}.ipynb"], env=env, cwd=root)
            sizes[name] = (root / f"{name}.executed.ipynb").stat().st_size
        nb = nbformat.read(root / "with.executed.ipynb", as_version=4)
        state_bytes = len(json.dumps(nb.metadata.get("widgets", {})))
        png_bytes = sum(
            len(o.get("data", {}).get("image/png", ""))
            for c in nb.cells for o in c.get("outputs", [])
        )
    mb = 1024 * 1024
    return {
        "with_mb": sizes["with"] / mb,
        "without_mb": sizes["without"] / mb,
        "growth_mb": (sizes["with"] - sizes["without"]) / mb,
        "state_mb": state_bytes / mb,
        "png_mb": png_bytes / mb,
    }


def _ok(flag: bool) -> str:
    return "ok" if flag else "MISSED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pan-size", type=int, default=1_000_000)
    ap.add_argument("--skip-notebook", action="store_true")
    args = ap.parse_args()
    if not CHROMIUM.exists():
        print(f"needs Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server, info = start_static_server(Path(tmp))
        try:
            pages = {}
            for n in sorted(set(args.sizes) | {args.pan_size}):
                t0 = time.perf_counter()
                pages[n] = export_map_page(n, info)
                size = pages[n].stat().st_size / 1024 / 1024
                print(f"exported {n:>9,} points: {size:6.1f} MB page "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)
            with sync_playwright() as p:
                browser = launch_chromium(p)
                try:
                    renderer = browser.new_page()
                    gl = renderer.evaluate(
                        "() => { const g = document.createElement('canvas').getContext('webgl');"
                        " const d = g && g.getExtension('WEBGL_debug_renderer_info');"
                        " return g ? (d ? g.getParameter(d.UNMASKED_RENDERER_WEBGL) : 'webgl')"
                        " : 'none'; }"
                    )
                    renderer.close()
                    print(f"\nChromium {browser.version}, WebGL renderer: {gl}")
                    print("\n== time to first render (median of "
                          f"{args.repeats} fresh pages)")
                    print(f"{'points':>10} {'first draw s':>13} {'page->drawn s':>14} "
                          f"{'target':>9} {'':>6}")
                    for n in args.sizes:
                        runs = [first_render(browser, info.url_for(pages[n]))
                                for _ in range(args.repeats)]
                        fd = statistics.median(r["first_draw_s"] for r in runs)
                        wall = statistics.median(r["wall_s"] for r in runs)
                        target = TARGET_FIRST_RENDER_S.get(n)
                        verdict = _ok(fd < target) if target else ""
                        tgt = f"< {target:.0f} s" if target else "-"
                        print(f"{n:>10,} {fd:>13.3f} {wall:>14.3f} {tgt:>9} {verdict:>6}",
                              flush=True)

                    print("\n== panning (a mouse drag dispatched in the page, ~1 s)")
                    print(f"{'points':>10} {'fps':>6} {'median frame ms':>16} "
                          f"{'max frame ms':>13} {'moved':>6}  target")
                    for n in sorted(set(args.sizes) | {args.pan_size}):
                        res = pan(browser, info.url_for(pages[n]))
                        line = (f"{n:>10,} {res['fps']:>6.1f} {res['median_ms']:>16.0f} "
                                f"{res['max_ms']:>13.0f} {res['moved']!s:>6}")
                        if n == args.pan_size:
                            pannable = (res["fps"] >= MIN_FPS and res["max_ms"] < MAX_GAP_MS
                                        and res["moved"])
                            line += (f"  pannable (>= {MIN_FPS:.0f} fps, every frame < "
                                     f"{MAX_GAP_MS:.0f} ms, image moved): {_ok(pannable)}")
                        print(line, flush=True)

                    ref = reference_page(info.root)
                    if ref is not None:
                        print("\n== reference: bare regl-scatterplot (default settings) on the "
                              "same browser, same drag")
                        print(f"{'points':>10} {'first draw s':>13} {'fps':>6} "
                              f"{'median frame ms':>16} {'max frame ms':>13}")
                        for n in sorted(set(args.sizes) | {args.pan_size}):
                            r = reference_run(browser, info.url_for(ref), n)
                            print(f"{n:>10,} {r['first_draw_s']:>13.3f} {r['fps']:>6.1f} "
                                  f"{r['median_ms']:>16.0f} {r['max_ms']:>13.0f}", flush=True)
                finally:
                    browser.close()
        finally:
            server.shutdown()
            server.server_close()

    if not args.skip_notebook:
        print("\n== saved notebook, one 100,000-point FeatureMap (nbconvert --execute)")
        g = notebook_growth(100_000)
        print(f"{'with MB':>8} {'without MB':>11} {'growth MB':>10} {'state MB':>9} "
              f"{'PNG MB':>7} {'target':>9}")
        print(f"{g['with_mb']:>8.2f} {g['without_mb']:>11.2f} {g['growth_mb']:>10.2f} "
              f"{g['state_mb']:>9.2f} {g['png_mb']:>7.2f} "
              f"{f'< {TARGET_GROWTH_MB_PER_100K:.0f} MB':>9} "
              f"{_ok(g['growth_mb'] < TARGET_GROWTH_MB_PER_100K)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
