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
* **One pytest process.** ``test_server.py`` uses pytest-jupyter, whose fixtures run an asyncio
  loop per test; Playwright's sync API (the ``chromium`` fixture, session-wide) keeps its own loop
  running in this thread, and while it runs no other loop can. So the tests that use
  pytest-jupyter run first, the tests that start Playwright last, and pytest-jupyter's two
  autouse fixtures (which its plugin registers for every module collected after
  ``test_server.py``) act only in the modules that load the plugin.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
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
NOT_BUILD_CODE = ("server", "runs", "widgets", "reports", "record", "cli.py", "__main__.py")
STALE_DAYS = 7


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
    if _saved_cache_env:
        old = _saved_cache_env.pop()
        if old is None:
            os.environ.pop("WORKBENCH_CACHE", None)
        else:
            os.environ["WORKBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The session's organism cache (``$WORKBENCH_CACHE``, shared with subprocesses)."""
    return Path(os.environ["WORKBENCH_CACHE"])


@pytest.fixture(scope="session")
def small_organism(cache_dir: Path) -> BuiltOrganism:
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
    if _uses_pytest_jupyter(item):
        return 0
    return 2 if "chromium" in getattr(item, "fixturenames", ()) else 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_phase)  # stable: collection order within each phase


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
