"""Shared fixtures and session set-up: the test cache, the tiny organism, one pytest process.

* **The test cache.** Every test, and every process a test starts (papermill notebooks, the CLI,
  JupyterLab kernels), sees ``WORKBENCH_CACHE`` pointed at ``<repo>/.test-cache/<key>/``
  (git-ignored; ``$WORKBENCH_TEST_CACHE`` moves the ``.test-cache`` folder), never the user's
  cache. Organism builds and their dictionaries are cached by recipe hash inside it, so each
  recipe is built once, by whichever test needs it first, and reused by every later test and
  process. The key hashes the package's source (all but the orchestration and display layers,
  ``NOT_BUILD_CODE``) and the versions of the libraries that train the builds, so a build is
  never reused across a code change that could alter it; key folders unused for a week are
  removed. Tests of building and caching themselves point ``WORKBENCH_CACHE`` at
  their own ``tmp_path`` (``test_organism_build.py``).
* **The default organism, built in the background.** When a selected test uses ``cache_dir``
  (the full-size tests, the README, the notebooks), a subprocess builds the default organism
  and its dictionary (or finds them) right after collection; ``cache_dir`` waits for it. The
  build trains on one thread, so on a 2-core machine the other tests run beside it: they come
  first, the ``cache_dir`` tests after them.
* **One pytest run.** ``test_server.py`` uses pytest-jupyter, whose fixtures run an asyncio
  loop per test; Playwright's sync API (the ``chromium`` fixture, session-wide) keeps its own loop
  running in this thread, and while it runs no other loop can. So the tests that use
  pytest-jupyter run first, the tests that start Playwright last (``_phase``), and
  pytest-jupyter's two autouse fixtures (which its plugin registers for every module collected
  after ``test_server.py``) act only in the modules that load the plugin.
* **Two workers.** ``make test`` runs pytest-xdist with ``--dist loadfile``: each module runs on
  one worker (its module fixtures built once), modules handed out in the order above. The
  pytest-jupyter tests are one module, the first handed out, so on whichever worker runs them
  they come before any Playwright test. (``--dist loadgroup`` would do, but xdist 3.8 sets a
  node id attribute pytest 9 no longer reads.) Workers share the test cache; a recipe two of
  them need is built by one while the other waits (:mod:`workbench._locks`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest

from workbench.organism import SMALL_CONFIG, BuiltOrganism, Organism, load_organism
from workbench.subjects import Subject, organism_subject

REPO = Path(__file__).resolve().parents[1]
# what trains an organism or a dictionary, besides the package's own code
BUILD_LIBRARIES = ("torch", "numpy", "transformer-lens", "sae-lens", "tokenizers", "transformers")
# the package's orchestration and display layers: the builders never import them (DESIGN's flow),
# so editing them keeps the cache
NOT_BUILD_CODE = (
    "server", "runs", "widgets", "reports", "record", "formats", "judges", "cli.py", "__main__.py"
)
STALE_DAYS = 7
# the default organism (seed 0) and its dictionary: what `cache_dir` users (full-size tests, the
# README, notebooks) need; trained on one thread each, so a second core is free to run other tests
PREBUILD = """\
from workbench.dictionaries import default_dictionary
from workbench.organism import load_organism
load_organism(seed=0, device="cpu", progress=False)
default_dictionary(seed=0, device="cpu", progress=False)
"""


def _cache_key() -> str:
    """sha256[:16] of the package's Python source (but ``NOT_BUILD_CODE``) and the training
    libraries' versions."""
    h = hashlib.sha256()
    pkg = REPO / "workbench"
    for path in sorted(pkg.rglob("*.py")):
        if path.relative_to(pkg).parts[0] in NOT_BUILD_CODE:
            continue
        h.update(path.relative_to(pkg).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for lib in BUILD_LIBRARIES:
        try:
            h.update(f"{lib}=={version(lib)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{lib} missing\0".encode())
    return h.hexdigest()[:16]


def _test_cache() -> Path:
    """The session's cache folder (created, marked used now; week-old siblings removed)."""
    base = Path(os.environ.get("WORKBENCH_TEST_CACHE") or REPO / ".test-cache")
    path = base / _cache_key()
    path.mkdir(parents=True, exist_ok=True)
    os.utime(path)
    for old in base.iterdir():
        if old != path and old.is_dir() and time.time() - old.stat().st_mtime > STALE_DAYS * 86400:
            shutil.rmtree(old, ignore_errors=True)
    return path


_saved_cache_env: list[str | None] = []


def pytest_configure(config: pytest.Config) -> None:
    _saved_cache_env.append(os.environ.get("WORKBENCH_CACHE"))
    os.environ["WORKBENCH_CACHE"] = str(_test_cache())


def pytest_unconfigure(config: pytest.Config) -> None:
    for proc, _ in _prebuilds:
        if proc.poll() is None:  # the session ended before anything needed the build
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    if _saved_cache_env:
        old = _saved_cache_env.pop()
        if old is None:
            os.environ.pop("WORKBENCH_CACHE", None)
        else:
            os.environ["WORKBENCH_CACHE"] = old


_prebuilds: list[tuple[subprocess.Popen[bytes], Path]] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """If a selected test uses ``cache_dir``, build the default organism in the background now."""
    if session.config.option.collectonly:
        return
    if any("cache_dir" in getattr(item, "fixturenames", ()) for item in session.items):
        log = Path(os.environ["WORKBENCH_CACHE"]) / "prebuild.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-c", PREBUILD], cwd=REPO, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        _prebuilds.append((proc, log))


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The session's organism cache (``$WORKBENCH_CACHE``, shared with subprocesses), with the
    default organism and its dictionary in it (built in the background since collection)."""
    for proc, log in _prebuilds:
        try:
            code = proc.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            code = proc.wait()
        if code != 0:  # the tests build it themselves, and fail with the real error if it has one
            tail = log.read_text(errors="replace")[-2000:]
            warnings.warn(f"background build of the default organism failed ({code}): {tail}",
                          stacklevel=1)
    return Path(os.environ["WORKBENCH_CACHE"])


@pytest.fixture(scope="session")
def small_organism() -> BuiltOrganism:
    return load_organism(seed=0, config=SMALL_CONFIG, device="cpu", progress=False)


@pytest.fixture(scope="session")
def small_subject(small_organism: BuiltOrganism) -> Subject:
    return organism_subject(small_organism, Organism(seed=0, config=SMALL_CONFIG))


# --- one process: pytest-jupyter's loops before Playwright's, and only where asked for ---------


def _uses_pytest_jupyter(node: object) -> bool:
    module = getattr(node, "module", None)
    plugins = getattr(module, "pytest_plugins", ())
    plugins = [plugins] if isinstance(plugins, str) else list(plugins)
    return any(p.startswith("pytest_jupyter") for p in plugins)


def _phase(item: pytest.Item) -> int:
    """0: pytest-jupyter; 1: the rest; 2: needs the default organism (``cache_dir``, so its
    background build overlaps phases 0-1); 3: Playwright."""
    names = getattr(item, "fixturenames", ())
    if _uses_pytest_jupyter(item):
        return 0
    path = getattr(item, "path", None)
    if "chromium" in names or (path is not None and path.parent.name == "browser"):
        # a browser module's other tests too: with --dist loadfile a module is handed out where
        # its first test sorts, and a browser module handed out early ran its map click beside
        # the default organism's background build (the click's round trip timed out)
        return 3
    return 2 if "cache_dir" in names else 1


def _order(item: pytest.Item) -> tuple[int, int]:
    # the widgets' browser test before the flagship's: in three full runs where the flagship's
    # browser test ran to its end first, the widgets test's map click never reached Python
    # (alone, or after it in a two-module run, it passes); see the note on issue 13
    path = getattr(item, "path", None)
    return _phase(item), 0 if path is not None and path.name == "test_widgets_browser.py" else 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_order)  # stable: collection order within each phase


@pytest.fixture(autouse=True)
def jp_asyncio_loop(request: pytest.FixtureRequest) -> Iterator[Any]:
    """pytest-jupyter's per-test loop, in the modules that load pytest-jupyter only."""
    if not _uses_pytest_jupyter(request.node):
        yield None
        return
    yield request.getfixturevalue("jp_asyncio_loop")  # the plugin's own fixture


@pytest.fixture(autouse=True)
def jp_server_cleanup(request: pytest.FixtureRequest) -> Iterator[None]:
    """pytest-jupyter's ServerApp clean-up, in the modules that load pytest-jupyter only."""
    if _uses_pytest_jupyter(request.node):
        request.getfixturevalue("jp_server_cleanup")
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        if _uses_pytest_jupyter(item):  # leave no closed loop set as this thread's current one
            asyncio.set_event_loop_policy(None)
