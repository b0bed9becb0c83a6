"""Build locks: one process builds a cached artefact, the others wait and then read it.

Organism builds and their dictionaries are cached by recipe; two processes asking for the same
recipe on a cold cache (parallel sweep runs, parallel test workers) would otherwise both train it.
:func:`build_lock` holds an exclusive ``flock`` on ``<path>.lock`` beside the artefact; whoever
gets it second finds the artefact built. Where ``fcntl`` is missing (Windows) it is a no-op and
the atomic rename of each build keeps the cache correct, at the cost of duplicated work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Hold the build lock of ``path`` (created beside it as ``.<name>.lock``) for the block."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
