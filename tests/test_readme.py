"""Every ```python block of README.md, run as written (examples are tests).

The README's Python blocks read as one session, top to bottom: "Feature geometry" uses the
``subject`` and ``dictionary`` of "Quick use", "Widgets" the ``tuned`` and ``direction`` of the
alignment section. So the blocks run in README order in one shared namespace, one test per block,
each failing with the block's own error (README line numbers in the traceback). A block run
alone (``-k``) first runs the blocks above it. They run in a temporary working folder, with the
organism cache pointed at the session's test cache (``tests/conftest.py``), so the organism, its
dictionary and the README's fine-tunes start from builds other tests have already made.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class Block:
    line: int  # README line of the block's first code line
    section: str  # the heading above it
    code: str = field(repr=False)

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")[:40]
        return f"L{self.line}-{slug}"


def python_blocks(text: str) -> list[Block]:
    """The fenced ```python blocks of a Markdown text, in order."""
    blocks: list[Block] = []
    section, start, fence = "top", 0, ""
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if fence:
            if line.strip() == fence:
                if start:
                    blocks.append(Block(start, section, "\n".join(lines) + "\n"))
                fence, start, lines = "", 0, []
            elif start:
                lines.append(line)
            continue
        opening = re.match(r"^\s*(`{3,}|~{3,})\s*(\w*)", line)
        if opening:
            fence = opening.group(1)
            start = number + 1 if opening.group(2).lower() in ("python", "py") else 0
        elif line.startswith("#"):
            section = line.lstrip("#").strip()
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


@dataclass
class Session:
    namespace: dict[str, Any] = field(
        default_factory=lambda: {"__name__": "__readme__"}, repr=False
    )
    ran: set[int] = field(default_factory=set)  # README lines of the blocks already run

    def run(self, block: Block) -> None:
        self.ran.add(block.line)
        code = compile(block.code, str(README), "exec")
        exec(_shifted(code, block.line - 1), self.namespace)


def _shifted(code: CodeType, lines: int) -> CodeType:
    """``code`` with every line number moved down by ``lines`` (tracebacks cite README lines)."""
    consts = tuple(_shifted(c, lines) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=code.co_firstlineno + lines, co_consts=consts)


@pytest.fixture(scope="module")
def session(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("readme"))
        yield Session()


def test_readme_has_python_blocks() -> None:
    assert BLOCKS, f"no ```python block in {README}"
    assert all(b.code.strip() for b in BLOCKS), [b.id for b in BLOCKS if not b.code.strip()]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, session: Session) -> None:
    for earlier in BLOCKS[: BLOCKS.index(block)]:
        if earlier.line not in session.ran:  # run alone: the blocks above it first
            session.run(earlier)
    session.run(block)
