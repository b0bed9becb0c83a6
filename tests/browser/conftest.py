"""Browser-test fixtures: headless Chromium (Playwright), JupyterLab, a localhost server.

* ``chromium``: Debian's ``/usr/bin/chromium`` through Playwright, software WebGL. Browser
  tests are skipped, with the reason, only when ``/usr/bin/chromium`` is missing (a missing
  ``playwright`` package is an error: it is in the ``dev`` extra). Playwright's sync API keeps
  its asyncio loop running in this thread until the session ends, so no other loop can run after
  it starts: ``tests/conftest.py`` runs the tests that use ``chromium`` last.
* ``offline``: a fresh page (own context) whose non-localhost requests are aborted and recorded;
  tests call ``offline.assert_offline()`` and teardown checks it again.
* ``lab``: a real ``jupyter lab`` (the venv's) in a temp root, private Jupyter dirs, no traffic
  off the machine, kernels on this interpreter; its process group is killed at the end.
* ``static_server``: an HTTP server on 127.0.0.1 serving a temp directory.

The helpers behind them live in ``_browser.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import (
    CHROMIUM,
    Lab,
    OfflinePage,
    StaticServer,
    launch_chromium,
    open_offline_page,
    start_lab,
    start_static_server,
)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium (software WebGL) launched through Playwright."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def offline(chromium: Any) -> Iterator[OfflinePage]:
    """A fresh page with every non-localhost request aborted and recorded."""
    guard = open_offline_page(chromium)
    try:
        yield guard
    finally:
        external = guard.external()
        guard.context.close()
        assert not external, f"requests tried to leave localhost: {external}"


@pytest.fixture(scope="session")
def static_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:
    """An HTTP server on 127.0.0.1 serving a temp directory (write pages into ``.root``)."""
    server, info = start_static_server(tmp_path_factory.mktemp("static"))
    try:
        yield info
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def jupyter_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Private Jupyter dirs (config, data, runtime, kernelspec) shared by lab and nbconvert."""
    return tmp_path_factory.mktemp("jupyter-home")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, jupyter_home: Path) -> Iterator[Lab]:
    """A real JupyterLab server, waited for on ``/api/status``, process group killed after."""
    server = start_lab(tmp_path_factory.mktemp("lab-root"), jupyter_home)
    try:
        yield server
    finally:
        server.stop()
