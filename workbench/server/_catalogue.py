"""The catalogue: the analyses folders as the server offers them.

The folders are the user's own (``c.WorkbenchServer.analyses_dir``, ``$WORKBENCH_ANALYSES``) and
then the analyses that ship with workbench; a name in an earlier folder shadows the same name in a
later one. A run is launched by a notebook *name*, looked up in these folders only
(:func:`resolve_name`: no separators, ``..``, hidden files, symlinks out of a folder or names longer
than a file name can be). :func:`list_analyses` is ``GET /workbench/analyses``: each notebook's
title (its first markdown heading) and parameters with their types, defaults, help and the choices
and ranges its parameters cell declares (:func:`workbench.runs.notebook_parameters`), which the
panel turns into its form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.runs import OUT_DIR, ParamSpec, check_name_length, notebook_parameters
from workbench.server._errors import RequestError

#: notebook names: the run store's rule (a file of the analyses folder, no separators)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


def resolve_name(roots: Sequence[Path], name: Any) -> Path:
    """A notebook *name* -> its file inside the first of ``roots`` that has it; anything else a
    :class:`RequestError` (400 for a refused name, 404 naming the notebooks there are)."""
    if not isinstance(name, str) or not name:
        raise RequestError(400, "'notebook' must be a non-empty string: the name of a "
                           "notebook in the analyses folders")
    try:
        check_name_length(name)
    except ValueError as e:
        raise RequestError(400, str(e)) from None
    if not _NAME.match(name) or ".." in name:
        raise RequestError(400, f"refused notebook name {name!r}: a name is a file of the "
                           "analyses folder (no path separators, no '..', no leading dot)")
    file = name if name.endswith(".ipynb") else name + ".ipynb"
    for root in roots:
        path = (root / file).resolve()
        if not path.is_relative_to(root):
            raise RequestError(400, f"refused notebook name {name!r}: it resolves outside the "
                               "analyses folder")
        if path.is_file():
            return path
    known = ", ".join(notebooks(roots)) or "none"
    raise RequestError(404, f"no notebook {file!r} in the analyses folders; available: {known}")


def _notebooks(root: Path) -> list[Path]:
    """The runnable notebooks of ``root``: no hidden files, no symlinks out of it."""
    if not root.is_dir():
        return []
    return [p for p in sorted(root.glob("*.ipynb"))
            if not p.name.startswith(".") and p.is_file() and p.resolve().is_relative_to(root)]


def notebooks(roots: Sequence[Path]) -> dict[str, Path]:
    """Every notebook runnable by name -> its file, earlier folders first (shadowing later)."""
    found: dict[str, Path] = {}
    for root in roots:
        for p in _notebooks(root):
            found.setdefault(p.stem, p)
    return found


def list_analyses(roots: Sequence[Path]) -> list[dict[str, Any]]:
    """``GET /workbench/analyses``: ``[{name, path, title, parameters, folder}]``, with
    ``error`` (and no parameters) for a notebook that cannot run: no parameters cell, a bad
    declaration. ``folder`` is the index of its folder in ``roots`` (0: the user's own first)."""
    out = []
    for path in notebooks(roots).values():
        entry: dict[str, Any] = {
            "name": path.stem, "path": path.name, "title": _title(path), "parameters": [],
            "folder": next(i for i, r in enumerate(roots) if path.parent == r),
        }
        try:
            specs = notebook_parameters(path)
        except Exception as e:  # no parameters cell, a bad declaration, unreadable notebook
            entry["error"] = str(e)
        else:
            entry["parameters"] = [parameter_json(s) for s in specs.values() if s.name != OUT_DIR]
        out.append(entry)
    return out


def parameter_json(spec: ParamSpec) -> dict[str, Any]:
    """One parameter as the panel reads it: ``{name, type, default, help, choices, minimum,
    maximum, exclusive_minimum, exclusive_maximum}`` (``choices``, ``minimum``, ``maximum``
    null when not declared)."""
    choices = None if spec.choices is None else [_jsonable(c, repr(c)) for c in spec.choices]
    return {
        "name": spec.name, "type": spec.type, "default": _jsonable(spec.default, spec.source),
        "help": spec.help, "choices": choices, "minimum": spec.minimum, "maximum": spec.maximum,
        "exclusive_minimum": spec.exclusive_minimum, "exclusive_maximum": spec.exclusive_maximum,
    }


def _title(path: Path) -> str:
    """The notebook's first markdown heading, else its file name."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.stem
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        for line in text.splitlines():
            m = _HEADING.match(line)
            if m:
                return m.group(1)
    return path.stem


def _jsonable(value: Any, source: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return source
    return value
