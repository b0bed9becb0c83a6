"""Shared fixtures: an isolated cache and a tiny organism built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.organism import SMALL_CONFIG, BuiltOrganism, load_organism
from workbench.subjects import Subject, make_subject


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private organism cache for the test session (never the user's real cache)."""
    path = tmp_path_factory.mktemp("wbcache")
    mp = pytest.MonkeyPatch()
    mp.setenv("WORKBENCH_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def small_organism(cache_dir: Path) -> BuiltOrganism:
    return load_organism(seed=0, config=SMALL_CONFIG, device="cpu", progress=False)


@pytest.fixture(scope="session")
def small_subject(small_organism: BuiltOrganism) -> Subject:
    b = small_organism
    return make_subject(b.model, b.tokenizer, b.name, "organism", b.path)
