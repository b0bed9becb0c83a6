"""The widget contract: one JSON file that both sides of every widget are tested against.

``workbench/widgets/contract.json`` lists each widget's synced traits (name, traitlets type,
default, direction, and for binary traits the dtype and shape of the buffer), the records that
travel inside ``List[Dict]``/``Dict`` traits, and the custom messages. Nothing reads it at run
time; instead

* ``tests/test_widgets.py`` compares every widget class's synced traits (:func:`describe_traits`),
  buffers, records and messages with it;
* ``extension/src/widgets/__tests__/contract.test.ts`` compares ``contract.ts`` (``TRAITS``,
  ``FIELDS``, ``BUFFERS``, ``MESSAGES``, ``DEFAULTS``, ...) with it;
* the tables of ``extension/src/widgets/CONTRACT.md`` are generated from it
  (``python -m workbench.widgets._contract`` rewrites them; a test fails when they are stale).

So a trait renamed on one side only fails that side's test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import traitlets

__all__ = [
    "CONTRACT_PATH",
    "PYTHON_KEYS",
    "describe_traits",
    "load",
    "python_view",
    "render_markdown",
]

CONTRACT_PATH = Path(__file__).with_name("contract.json")

PYTHON_KEYS = ("name", "type", "default", "items", "length", "values")
"""The keys of a trait's entry that the traitlets declaration itself determines."""

_BEGIN = "<!-- generated from workbench/widgets/contract.json: {key} -->"
_END = "<!-- end of generated {key} -->"


def load() -> dict[str, Any]:
    """The contract, parsed (a fresh copy each call)."""
    out = json.loads(CONTRACT_PATH.read_text(encoding="utf-8"))
    assert isinstance(out, dict)
    return out


def python_view(trait: dict[str, Any]) -> dict[str, Any]:
    """A contract trait entry cut down to :data:`PYTHON_KEYS`, like :func:`describe_traits`."""
    return {k: trait[k] for k in PYTHON_KEYS if k in trait}


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, tuple):
        return list(value)
    return value


def _describe(name: str, trait: traitlets.TraitType[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": type(trait).__name__}
    if isinstance(trait, traitlets.Enum):
        out["values"] = list(trait.values or ())
    out["default"] = _default(trait.default())
    if isinstance(trait, traitlets.List):
        item = trait._trait
        if item is not None:
            out["items"] = type(item).__name__
        if trait._minlen == trait._maxlen:
            out["length"] = trait._minlen
    return out


def describe_traits(cls: type[traitlets.HasTraits]) -> list[dict[str, Any]]:
    """The synced traits ``cls`` adds to ``anywidget.AnyWidget``, in the contract's vocabulary
    (keys :data:`PYTHON_KEYS`), sorted by name."""
    import anywidget

    base = set(anywidget.AnyWidget.class_traits(sync=True))
    traits = cls.class_traits(sync=True)
    return [_describe(name, traits[name]) for name in sorted(traits) if name not in base]


# ------------------------------------------------------------------ CONTRACT.md


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _type(trait: dict[str, Any]) -> str:
    kind = str(trait["type"])
    if kind == "Bytes":
        shape = ", ".join(str(s) for s in trait["shape"])
        return f"Bytes: {trait['dtype']}[{shape}]"
    if kind == "Enum":
        return "Enum(" + ", ".join(json.dumps(v) for v in trait["values"]) + ")"
    if kind == "List":
        item = str(trait["items"])
        if "record" in trait:
            item += f": {trait['record']}"
        length = f" ({trait['length']})" if "length" in trait else ""
        return f"List[{item}]{length}"
    if kind == "Dict" and "record" in trait:
        return f"Dict: {trait['record']}"
    return kind


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _traits_table(widget: dict[str, Any]) -> list[str]:
    rows = [
        "| trait | type | direction | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in widget["traits"]:
        default = "empty" if t["type"] == "Bytes" else _code(t["default"])
        rows.append(
            f"| `{t['name']}` | {_cell(_type(t))} | {t['sync']} | {_cell(default)} "
            f"| {_cell(t['doc'])} |"
        )
    return rows


def _messages(widget: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for direction, messages in widget.get("messages", {}).items():
        for kind, spec in messages.items():
            fields = ", ".join(f'"{k}": {v}' for k, v in spec["fields"].items())
            lines.append(f"- {direction} `{kind}`: `{{{fields}}}`; {_cell(spec['doc'])}")
    return lines


def _records(contract: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, fields in contract["records"].items():
        if lines:
            lines.append("")
        lines += [f"`{name}`:", "", "| field | type |", "| --- | --- |"]
        lines += [f"| `{k}` | {_cell(v)} |" for k, v in fields.items()]
    return lines


def _blocks(contract: dict[str, Any]) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    for key, widget in contract["widgets"].items():
        head = [
            f"Python `{widget['python']}`, module `{widget['module']}`, root "
            f'`data-testid="{widget["test_id"]}"`.',
            "",
        ]
        messages = _messages(widget)
        blocks[key] = head + _traits_table(widget) + (["", *messages] if messages else [])
    blocks["records"] = _records(contract)
    debounce = ", ".join(f"{k} {v} ms" for k, v in contract["debounce_ms"].items())
    dtypes = ", ".join(f"{k} = `{v}`" for k, v in contract["binary"]["dtypes"].items())
    blocks["binary"] = [
        f"Contract version {contract['version']}. Byte order: {contract['binary']['byte_order']}"
        f"-endian ({dtypes}); a `Bytes` trait of shape `[n, 2]` is row-major (interleaved). "
        f"Debounce: {debounce}."
    ]
    return blocks


def render_markdown(text: str, contract: dict[str, Any] | None = None) -> str:
    """``text`` (CONTRACT.md) with every generated block rewritten from the contract.

    Raises:
        ValueError: a block's begin or end marker is missing.
    """
    contract = load() if contract is None else contract
    for key, lines in _blocks(contract).items():
        begin, end = _BEGIN.format(key=key), _END.format(key=key)
        start = text.find(begin)
        stop = text.find(end, start + 1)
        if start < 0 or stop < 0:
            raise ValueError(f"CONTRACT.md lacks the markers of block {key!r}: {begin} ... {end}")
        text = text[: start + len(begin)] + "\n" + "\n".join(lines) + "\n" + text[stop:]
    return text


def main(argv: list[str]) -> int:
    """``python -m workbench.widgets._contract [CONTRACT.md]``: rewrite the generated tables."""
    default = Path(__file__).parents[2] / "extension" / "src" / "widgets" / "CONTRACT.md"
    path = Path(argv[0]) if argv else default
    old = path.read_text(encoding="utf-8")
    new = render_markdown(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    print(f"{path}: {'rewritten' if new != old else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
