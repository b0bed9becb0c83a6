"""The package's import graph, built from the source: no cycles, no upward imports.

DESIGN.md's data flow fixes an order of layers; a module may import its own layer and the ones
below it, never one above. Every ``import`` counts, at module level or inside a function, so a
cycle cannot hide behind a deferred import. Only ``if TYPE_CHECKING:`` blocks are left out (they
never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "workbench"

#: bottom to top; a module may import modules of its own layer or a lower one
LAYERS: tuple[tuple[str, ...], ...] = (
    ("fingerprint", "_device", "_hub", "_locks", "_atomic", "execution"),
    ("organism",),
    ("subjects",),
    ("dictionaries", "data", "formats", "judges", "specs", "calibration"),
    ("activations", "geometry"),
    ("features", "neighborhoods", "behaviour", "predictors"),
    ("forecasts", "finetunes", "rate_forecasts"),
    ("audits",),
    ("patches", "context", "experiments"),
    ("analysis",),
    ("record",),
    ("widgets",),
    ("runs", "reports"),
    ("server",),
    ("cli", "__main__", "__init__"),
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The workbench modules ``name`` imports (resolved to the module, not the package)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "workbench")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] == "workbench":
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    out.add(sub if sub in modules else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    out.discard(name)
    return {m for m in out if m in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer() -> None:
    missing = sorted({_component(m) for m in _modules()} - set(RANK))
    assert not missing, f"place {missing} in LAYERS (DESIGN.md's flow) before adding them"


def test_no_upward_imports() -> None:
    upward = [
        f"{src} (layer {RANK[_component(src)]}) imports {dst} (layer {RANK[_component(dst)]})"
        for src, dsts in _graph().items()
        for dst in sorted(dsts)
        if RANK[_component(dst)] > RANK[_component(src)]
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strongconnect(v)
    assert cycles == []


def test_the_graph_sees_real_edges() -> None:
    """The checker is not vacuous: known edges are found, and a planted cycle would be."""
    graph = _graph()
    assert "workbench.execution" in graph["workbench.subjects"]
    assert "workbench.dictionaries._organism" in graph["workbench.dictionaries._load"]
    assert "workbench.subjects" in graph["workbench.forecasts"]
    assert RANK[_component("workbench.server._base")] > RANK[_component("workbench.runs")]


def test_only_the_execution_layer_and_the_organism_build_import_transformer_lens() -> None:
    out = subprocess.run(
        ["grep", "-rl", "--include=*.py", "transformer_lens", str(PKG)],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    found = sorted(str(Path(p).relative_to(PKG)) for p in out)
    assert found and all(
        p.startswith("execution/") or p == "organism/build.py" for p in found
    ), found


@pytest.mark.parametrize("module", ["workbench.organism", "workbench.execution"])
def test_the_bottom_layers_import_nothing_above_them(module: str) -> None:
    graph = _graph()
    above = {
        dst
        for src, dsts in graph.items()
        if src == module or src.startswith(module + ".")
        for dst in dsts
        if not (dst == module or dst.startswith(module + "."))
    }
    allowed = {"workbench.fingerprint", "workbench._device", "workbench._hub", "workbench._locks"}
    assert above <= allowed, above
