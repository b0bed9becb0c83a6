"""Helpers shared by the browser fixtures (``conftest.py``), the tests and the benchmark.

* ``CHROMIUM``/``CHROMIUM_ARGS``: Debian's Chromium and the flags that give it software WebGL
  (SwiftShader) headless; ``launch_chromium`` starts it through Playwright (never a downloaded
  browser).
* ``open_offline_page``: a page whose every request is routed: ``127.0.0.1``/``localhost`` (and
  ``file:``, ``data:``, ``blob:``) go through, anything else is aborted *and recorded*
  (``OfflinePage.assert_offline``); WebSocket URLs are recorded too.
* ``jupyter_env``: private Jupyter dirs, no announcements, and a ``python3`` kernelspec pinned to
  this interpreter; ``start_lab``: a real ``jupyter lab`` subprocess waited for on
  ``/api/status`` (``Lab.stop`` kills its process group).
* ``start_workbench_lab``: ``start_lab`` with the workbench server extension enabled (its
  ``WorkbenchServer`` config) and a built lab extension linked into the private
  ``JUPYTER_PATH``, as ``jupyter labextension develop`` would.
* ``start_static_server``: a threaded HTTP server on 127.0.0.1 serving a directory.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome-error"}
VENV_BIN = Path(sys.executable).parent
LAB_START_TIMEOUT_S = 120.0


def is_local_url(url: str) -> bool:
    """Whether a request URL stays on this machine (localhost, file, data or blob)."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jupyter_env(home: Path) -> dict[str, str]:
    """Environment for ``jupyter`` subprocesses: private dirs, a kernelspec pinned to this Python.

    ``JUPYTER_PATH`` comes first in Jupyter's data path, so its ``kernels/python3`` (argv: this
    interpreter, ``-m ipykernel_launcher``) wins over any other ``python3`` kernelspec; the
    venv's prefix stays on the path, so the prebuilt lab extensions of anywidget and ipywidgets
    (``<venv>/share/jupyter/labextensions``) are found as usual.
    """
    share = home / "share"
    spec_dir = share / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (workbench venv)",
        "language": "python",
        "metadata": {"debugger": False},
    }))
    config = home / "config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    # the announcements plugin asks to fetch Jupyter news; the update checker calls PyPI
    (config / "labconfig" / "page_config.json").write_text(json.dumps({
        "disabledExtensions": {
            "@jupyterlab/apputils-extension:announcements": True,
            "@jupyterlab/extensionmanager-extension": True,
        }
    }))
    env = dict(os.environ)
    env.update({
        "JUPYTER_PATH": str(share),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    })
    for key in ("JUPYTER_PREFER_ENV_PATH", "JUPYTER_CONFIG_PATH"):
        env.pop(key, None)
    return env


@dataclass
class OfflinePage:
    """A Playwright page whose non-local requests are aborted and recorded."""

    page: Any
    context: Any
    blocked: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def external(self) -> list[str]:
        return self.blocked + [u for u in self.websockets if not is_local_url(u)]

    def assert_offline(self) -> None:
        external = self.external()
        assert not external, f"requests tried to leave localhost: {external}"


def open_offline_page(
    browser: Any, viewport: tuple[int, int] = (1280, 900), scale: float = 1.0
) -> OfflinePage:
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        device_scale_factor=scale,
        service_workers="block",
    )
    page = context.new_page()
    guard = OfflinePage(page=page, context=context)

    def route(r: Any) -> None:
        url = r.request.url
        if is_local_url(url):
            r.continue_()
        else:
            guard.blocked.append(url)
            r.abort("blockedbyclient")

    context.route("**/*", route)
    page.on("websocket", lambda ws: guard.websockets.append(ws.url))
    page.on("console", lambda m: guard.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: guard.page_errors.append(str(e)))
    page.set_default_timeout(30_000)
    return guard


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, software WebGL, through a started Playwright."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class StaticServer:
    root: Path
    url: str

    def url_for(self, path: Path | str) -> str:
        rel = Path(path).resolve().relative_to(self.root.resolve())
        return f"{self.url}/{rel.as_posix()}"


def start_static_server(root: Path) -> tuple[http.server.ThreadingHTTPServer, StaticServer]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, StaticServer(root=root, url=f"http://127.0.0.1:{server.server_address[1]}")


@dataclass
class Lab:
    """A running JupyterLab: its root directory, base URL, token and environment."""

    root: Path
    url: str
    token: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]

    def tree_url(self, name: str) -> str:
        """The notebook alone in a fresh layout (``reset``): the labs are shared by the tests of
        a session, and a restored workspace would reopen an earlier test's notebooks."""
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def api(self, path: str) -> Any:
        req = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read().decode())

    def stop(self) -> None:
        """Terminate the server and its kernels (its whole process group)."""
        _kill_group(self.proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)




def start_lab(root: Path, home: Path, timeout: float = LAB_START_TIMEOUT_S) -> Lab:
    """Start the venv's ``jupyter lab`` on a free port with a random token; wait for it.

    Nothing it does leaves localhost: no news feed, no update check, the extension manager
    read-only (no PyPI listing), the announcements plugin disabled (``jupyter_env``).
    """
    env = jupyter_env(home)
    port = free_port()
    token = secrets.token_hex(24)
    log = home / f"lab-{port}.log"
    cmd = [
        str(VENV_BIN / "jupyter"), "lab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI runners
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab = Lab(root=root, url=f"http://127.0.0.1:{port}", token=token, env=env, log=log, proc=proc)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
                )
            try:
                lab.api("/api/status")
                return lab
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter lab did not answer /api/status in {timeout:.0f} s:"
                        f"\n{log.read_text()[-4000:]}"
                    ) from None
                time.sleep(0.5)
    except BaseException:
        _kill_group(proc)
        raise


def start_workbench_lab(
    root: Path,
    home: Path,
    labextension: Path,
    workbench_config: dict[str, Any],
    name: str = "@workbench/extension",
    server_extension: bool = True,
) -> Lab:
    """``start_lab`` with ``workbench.server`` enabled (``c.WorkbenchServer``:
    ``workbench_config``; ``server_extension=False`` disables it, to test the front end without
    it) and ``labextension`` (a built prebuilt extension) linked as ``name`` into
    ``<home>/share``."""
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"jpserver_extensions": {"workbench.server": server_extension}},
        "WorkbenchServer": workbench_config,
    }))
    link = home / "share" / "labextensions" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(labextension, target_is_directory=True)
    return start_lab(root, home)


def save_screenshot(png: bytes, path: Path, *, limit: int = 200_000) -> None:
    """A README picture from Playwright PNG bytes: a 64-colour palette PNG (small in git)."""
    import io

    from PIL import Image  # WB_SCREENSHOT needs Pillow

    img = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    img.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    assert path.stat().st_size < limit, path.stat().st_size


def run_all_cells(page: Any) -> None:
    """Run -> Run All Cells (menu bar, or the command palette on every other try), until every
    code cell with a prompt shows it is queued or ran (``[*]:`` or ``[n]:``). A dialog in the
    way is accepted first.
    On a loaded machine the first paint, the menu or the kernel can lag, so it tries six times;
    if all fail, the error names the last failure and a screenshot of the page."""
    # every code cell that shows a prompt (a collapsed input shows none) queued or ran: Run All
    # queues them all at once (a command that ran only the active cell, e.g. a palette entry
    # chosen before its filter caught up, does not count)
    started = """() => { const ps = [...document.querySelectorAll(
        '.jp-Notebook .jp-CodeCell .jp-InputPrompt')].filter(p => p.textContent.trim());
        return ps.length > 0 && ps.every(p => /\\[(\\*|\\d+)\\]/.test(p.textContent)); }"""
    last: Exception | None = None
    for attempt in range(6):
        try:
            dialog = page.locator(".jp-Dialog .jp-mod-accept")
            if dialog.count():  # e.g. a kernel choice put up while the lab was busy
                dialog.first.click(timeout=10_000)
            page.locator(".jp-Notebook").first.click(
                position={"x": 5, "y": 5}, force=True, timeout=10_000)
            if attempt % 2 == 0:
                page.locator(".lm-MenuBar-item", has_text="Run").first.click(timeout=10_000)
                item = page.locator(".lm-Menu-item", has_text="Run All Cells").first
                item.wait_for(state="visible", timeout=10_000)
                item.click(timeout=10_000)
            else:
                page.keyboard.press("Control+Shift+C")
                page.locator(".lm-CommandPalette-input").fill("Run All Cells", timeout=10_000)
                # Enter runs the highlighted entry: wait until the filter has put this one there
                page.wait_for_function(
                    """() => { const a = document.querySelector(
                        '.lm-CommandPalette-item.lm-mod-active .lm-CommandPalette-itemLabel');
                        return a !== null && a.textContent.trim() === 'Run All Cells'; }""",
                    timeout=10_000)
                page.keyboard.press("Enter")
            page.wait_for_function(started, timeout=60_000)
            return
        except Exception as e:  # close whatever opened and retry
            last = e
            page.keyboard.press("Escape")
            page.keyboard.press("Escape")
            time.sleep(2.0)
    shot = Path(tempfile.mkdtemp(prefix="wb-run-all-")) / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    raise AssertionError(f"Run All Cells did not start the notebook (last: {last!r:.300}); "
                         f"the page: {shot}")


def save_picture(png: bytes, path: Path, *, width: int = 1200, colors: int = 128,
                 limit: int = 300_000) -> None:
    """A README picture from Playwright PNG bytes, at most ``width`` px wide (Lanczos), as a
    ``colors``-colour palette PNG under ``limit`` bytes."""
    import io

    from PIL import Image  # WB_SCREENSHOT needs Pillow

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    assert path.stat().st_size < limit, path.stat().st_size


#: the widgets' root elements (their data-testid, from workbench/widgets/contract.json)
FEATURE_MAP = '[data-testid="wb-feature-map"]'
NEIGHBORHOOD = '[data-testid="wb-neighborhood"]'
PATCH_PREVIEW = '[data-testid="wb-patch-preview"]'


def require_front_end() -> None:
    """The widgets need their bundles; without them, fail with the build command."""
    from workbench.widgets._static import BUNDLES, bundle_path

    for name in BUNDLES:
        bundle_path(name)  # raises FrontEndNotBuiltError: "run `npm install && npm run build`"


def show_panel(page: Any, lab: Lab) -> Any:
    """Load Lab and show the Workbench panel from its sidebar tab (the restored layout may
    have it open already; a click toggles it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.goto(f"{lab.url}/lab?token={lab.token}")
    tab = page.locator('.jp-SideBar li[data-id="workbench-panel"]')
    tab.wait_for(timeout=120_000)
    panel = page.locator("#workbench-panel")
    for _ in range(5):
        if panel.is_visible():
            break
        tab.click()
        with contextlib.suppress(PlaywrightTimeoutError):
            panel.wait_for(state="visible", timeout=5_000)
    panel.wait_for(state="visible")
    return panel
