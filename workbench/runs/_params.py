"""Finding analysis notebooks and checking their parameters, before any kernel starts."""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the parameter the runner sets itself: the notebook writes its files (record.json, figures)
#: under ``out_dir``, which is the run's staging directory (see :func:`workbench.runs.run`)
OUT_DIR = "out_dir"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
#: types a parameter can be declared (by annotation / ``# type:`` comment) or inferred as
_TYPES = {"int", "float", "bool", "str", "list", "dict", "any"}
_ALIASES = {
    "integer": "int", "number": "float", "boolean": "bool", "string": "str",
    "List": "list", "Dict": "dict", "tuple": "list", "Tuple": "list", "Sequence": "list",
    "Mapping": "dict", "Any": "any", "None": "any", "NoneType": "any", "object": "any",
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a notebook's ``parameters`` cell.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``, ``list``, ``dict`` or ``any``:
    the annotation or ``# type: T`` comment when there is one, else the type of the default's
    literal (``seed = 0`` is an int); ``any`` for ``None`` defaults and non-literal expressions.
    ``default`` is the default's value (``None`` when it is not a literal), ``source`` its text,
    ``help`` the trailing comment, ``optional`` whether ``None`` is accepted.
    """

    name: str
    type: str
    default: Any
    help: str = ""
    source: str = ""
    optional: bool = False
    literal: bool = True


def analyses_dir() -> Path:
    """The directory notebooks are run from by name: ``$WORKBENCH_ANALYSES``, else the repo's
    ``notebooks/`` (next to the ``workbench`` package)."""
    env = os.environ.get("WORKBENCH_ANALYSES")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[2] / "notebooks").resolve()


def available_notebooks() -> list[str]:
    """Names of the notebooks in :func:`analyses_dir` (without ``.ipynb``)."""
    root = analyses_dir()
    if not root.is_dir():
        return []
    return sorted(p.stem for p in root.glob("*.ipynb") if not p.name.startswith("."))


def resolve_notebook(name_or_path: str | os.PathLike[str]) -> Path:
    """The notebook file to run.

    * A ``str`` is a *name*: ``"alignment_audit"`` or ``"alignment_audit.ipynb"``, looked up in
      :func:`analyses_dir` only. Names with path separators, ``..``, a leading dot or a leading
      ``~`` are refused, and so is anything that resolves (symlinks followed) outside that
      directory: running by name never reaches a notebook elsewhere.
    * A :class:`pathlib.Path` (any ``os.PathLike``) is an explicit path: allowed anywhere, but it
      must be an existing ``.ipynb`` file. The CLI passes its argument as a path when it ends in
      ``.ipynb`` and contains a path separator (``./mine.ipynb``, ``/abs/x.ipynb``); see
      :func:`notebook_argument`.

    Raises ``ValueError`` (refused names) or ``FileNotFoundError`` (missing notebooks), naming the
    notebooks that are available.
    """
    if not isinstance(name_or_path, str):
        path = Path(os.fspath(name_or_path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"notebook {str(path)!r} does not exist (or is not a file)")
        if path.suffix != ".ipynb":
            raise ValueError(f"{str(path)!r} is not a notebook (.ipynb)")
        return path.resolve()
    name = name_or_path
    root = analyses_dir()
    known = ", ".join(available_notebooks()) or "none"
    if not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"refused notebook name {name!r}: a name is a file of {root} (no path separators, "
            f"no '..'); available: {known}. To run a notebook elsewhere pass its path "
            "explicitly (Python: pathlib.Path(...); CLI: a path ending in .ipynb such as "
            "./mine.ipynb)"
        )
    file = name if name.endswith(".ipynb") else name + ".ipynb"
    path = (root / file).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"refused notebook name {name!r}: it resolves outside {root}")
    if not path.is_file():
        raise FileNotFoundError(f"no notebook {file!r} in {root}; available: {known}")
    return path


def notebook_argument(arg: str) -> Path:
    """A CLI argument -> notebook: a path when it ends in ``.ipynb`` and has a path separator
    (or is absolute), else a name (see :func:`resolve_notebook`)."""
    if arg.endswith(".ipynb") and (os.sep in arg or "/" in arg or os.path.isabs(arg)):
        return resolve_notebook(Path(arg))
    return resolve_notebook(arg)


def _normalise_type(text: str) -> tuple[str, bool]:
    """An annotation / type comment -> (one of _TYPES, whether None is accepted)."""
    text = text.strip().strip("'\"")
    optional = False
    m = re.fullmatch(r"Optional\[(.*)\]", text)
    if m:
        text, optional = m.group(1).strip(), True
    base = re.split(r"\[", text, maxsplit=1)[0].strip()
    base = _ALIASES.get(base, base)
    if base not in _TYPES:
        return "any", True
    return base, optional or base == "any"


def _literal_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    for t, name in ((int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list"),
                    (dict, "dict")):
        if isinstance(value, t):
            return name
    return "any"


def _parameters_cell_index(nb: Mapping[str, Any]) -> int:
    for i, cell in enumerate(nb.get("cells", [])):
        if "parameters" in (cell.get("metadata", {}).get("tags") or []):
            return i
    return -1


def _no_parameters_cell(path: Path) -> ValueError:
    return ValueError(
        f"notebook {path} has no cell tagged 'parameters': tag the cell that assigns its "
        "parameters with the tag `parameters` (JupyterLab: Property Inspector > Cell Tags; or "
        "set the cell's metadata to {\"tags\": [\"parameters\"]}), so papermill can inject "
        "values after it"
    )


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, ParamSpec]:
    """The parameters of a notebook's ``parameters`` cell (papermill's ``inspect_notebook``),
    with declared or inferred types and evaluated defaults. ``ValueError`` naming the fix when
    the notebook has no cell tagged ``parameters``."""
    import nbformat
    import papermill

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if _parameters_cell_index(nb) < 0:
        raise _no_parameters_cell(path)
    raw = papermill.inspect_notebook(str(path))
    specs: dict[str, ParamSpec] = {}
    for name, p in raw.items():
        source = str(p.get("default", ""))
        try:
            default = ast.literal_eval(source)
            literal = True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default, literal = None, False
        declared = str(p.get("inferred_type_name") or "None")
        if declared != "None":
            type_, optional = _normalise_type(declared)
        elif not literal or default is None:
            type_, optional = "any", True
        else:
            type_, optional = _literal_type(default), False
        specs[name] = ParamSpec(
            name=name, type=type_, default=default, help=str(p.get("help", "")),
            source=source, optional=optional or (literal and default is None), literal=literal,
        )
    return specs


def _refuse(name: str, spec: ParamSpec, value: Any, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(
        f"parameter {name!r} must be {spec.type}{' or None' if spec.optional else ''}, "
        f"got {value!r}{extra}; default: {spec.source or spec.default!r}"
    )


def coerce_value(spec: ParamSpec, value: Any) -> Any:
    """``value`` as the parameter's declared type; CLI strings are parsed (``"3"`` -> 3 for an
    int, ``"0.5"`` -> 0.5, ``"true"``/``"false"`` -> bools, JSON for lists and dicts).
    ``ValueError`` naming the parameter and its type otherwise."""
    name, t = spec.name, spec.type
    if value is None or (isinstance(value, str) and spec.optional and t != "str"
                         and value.strip().lower() in {"none", "null"}):
        if spec.optional:
            return None
        raise _refuse(name, spec, value)
    if t == "any":
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _refuse(name, spec, value, "use true or false")
    if t == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _refuse(name, spec, value)
    if t == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                out = None
            if out is not None:
                return out
        raise _refuse(name, spec, value)
    if t == "str":
        if isinstance(value, str):
            return value
        raise _refuse(name, spec, value)
    want: type = list if t == "list" else dict
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise _refuse(name, spec, value, f"not JSON: {e}") from None
    if t == "list" and isinstance(value, tuple):
        value = list(value)
    if t == "dict" and isinstance(value, Mapping):
        value = dict(value)
    if not isinstance(value, want):
        raise _refuse(name, spec, value)
    return value


def _check_json(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"parameter {name!r}: {value!r} is not JSON-serialisable ({e})") from None


def validate_parameters(
    path: str | os.PathLike[str], params: Mapping[str, Any], *, allow_out_dir: bool = False
) -> dict[str, Any]:
    """Check and coerce ``params`` against the notebook's ``parameters`` cell; no kernel starts.

    Returns the coerced values (only the names given). ``ValueError`` for: a notebook without a
    ``parameters`` cell (naming the fix), an unknown name (listing the known ones), a value of
    the wrong type (naming the parameter and its type), and ``out_dir``, which the runner sets
    itself (unless ``allow_out_dir``).
    """
    specs = notebook_parameters(path)
    known = ", ".join(f"{s.name} ({s.type})" for s in specs.values()) or "none"
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in specs:
            raise ValueError(
                f"unknown parameter {name!r} for notebook {Path(path).name}; known parameters: "
                f"{known}"
            )
        if name == OUT_DIR and not allow_out_dir:
            raise ValueError(
                f"parameter {OUT_DIR!r} is set by the runner (the run's own directory); "
                "do not pass it"
            )
        coerced = coerce_value(specs[name], value)
        _check_json(name, coerced)
        out[name] = coerced
    return out


def effective_parameters(specs: Mapping[str, ParamSpec], given: Mapping[str, Any]) -> dict:
    """The literal defaults overlaid with the given values, without ``out_dir``: what a run
    is identified by and what ``parameters.json`` holds."""
    merged = {n: s.default for n, s in specs.items() if s.literal and n != OUT_DIR}
    merged.update({n: v for n, v in given.items() if n != OUT_DIR})
    return merged
