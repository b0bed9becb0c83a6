"""Finding analysis notebooks and checking their parameters, before any kernel starts."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import math
import os
import re
import tokenize
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

#: the parameter the runner sets itself: the notebook writes its files (record.json, figures)
#: under ``out_dir``, which is the run's staging directory (see :func:`workbench.runs.run`)
OUT_DIR = "out_dir"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: a user's own analyses folders (``os.pathsep``-separated), searched before the shipped ones
ANALYSES_ENV = "WORKBENCH_ANALYSES"
#: the longest notebook file name accepted (``.ipynb`` included): the usual file-system limit
MAX_NAME = 255
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
#: types a parameter can be declared (by annotation / ``# type:`` comment) or inferred as
_TYPES = {"int", "float", "bool", "str", "list", "dict", "any"}
_ALIASES = {
    "integer": "int", "number": "float", "boolean": "bool", "string": "str",
    "List": "list", "Dict": "dict", "tuple": "list", "Tuple": "list", "Sequence": "list",
    "Mapping": "dict", "Any": "any", "None": "any", "NoneType": "any", "object": "any",
}
#: the clauses a parameter's comment may hold: ``[choices: "a", "b"]``, ``[range: 0..1]``
_CLAUSE = re.compile(r"\[\s*(choices|range)\s*:")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_BETWEEN = re.compile(rf"^\s*({_NUMBER})\s*\.\.\s*({_NUMBER})\s*$")
_BOUND = re.compile(rf"^\s*(>=|>|<=|<)\s*({_NUMBER})\s*$")
_RANGE_FORMS = "a..b (inclusive), >= a, > a, <= b or < b, with a and b numbers"
_TYPE_COMMENT = re.compile(r"^type:\s*(\S*)\s*(.*)$", re.S)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a notebook's ``parameters`` cell.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``, ``list``, ``dict`` or ``any``:
    the annotation or ``# type: T`` comment when there is one, else the type of the default's
    literal (``seed = 0`` is an int); ``any`` for ``None`` defaults and non-literal expressions.
    ``default`` is the default's value (``None`` when it is not a literal), ``source`` its text,
    ``help`` the trailing comment, ``optional`` whether ``None`` is accepted.

    The comment may declare the values allowed, in a bracketed clause (left out of ``help``):
    ``[choices: "full", "small"]`` (Python literals, comma-separated) sets ``choices``;
    ``[range: 0..1]`` (inclusive), ``[range: >= 1]``, ``> a``, ``<= b`` or ``< b`` set
    ``minimum`` / ``maximum`` and whether each is ``exclusive_*``. :func:`check_value` refuses
    values outside them.
    """

    name: str
    type: str
    default: Any
    help: str = ""
    source: str = ""
    optional: bool = False
    literal: bool = True
    choices: tuple[Any, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    def allowed(self) -> str:
        """The declared constraint in words: ``one of 'full', 'small'``, ``>= 0 and <= 1``,
        ``> 0``; ``""`` when there is none."""
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(_show(c) for c in self.choices))
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_minimum else '>='} {_show(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.exclusive_maximum else '<='} {_show(self.maximum)}")
        return " and ".join(parts)


def shipped_analyses_dir() -> Path:
    """The analyses that ship with workbench: ``workbench/analyses/`` in an installed wheel (the
    build copies the checkout's ``notebooks/*.ipynb`` there), else the checkout's ``notebooks/``
    beside the package (a checkout, or an editable install of one)."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "analyses"
    if packaged.is_dir():
        return packaged
    return (package.parent / "notebooks").resolve()


def analyses_dirs() -> list[Path]:
    """The folders notebook *names* are looked up in, in order: a user's own folders
    (``$WORKBENCH_ANALYSES``, several joined by ``os.pathsep``; the CLI's ``--analyses DIR``
    adds to it), then the shipped analyses (:func:`shipped_analyses_dir`). A name in an earlier
    folder shadows the same name in a later one."""
    dirs: list[Path] = []
    for part in os.environ.get(ANALYSES_ENV, "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()).expanduser().resolve())
    dirs.append(shipped_analyses_dir())
    return list(dict.fromkeys(dirs))


def analyses_dir() -> Path:
    """The first folder of :func:`analyses_dirs`: the user's own (``$WORKBENCH_ANALYSES``) when
    one is set, else the shipped analyses."""
    return analyses_dirs()[0]


def _by_name() -> dict[str, Path]:
    """Every notebook runnable by name -> its file, in lookup order (each folder of
    :func:`analyses_dirs` in turn, its notebooks sorted by name); a shadowed name appears once,
    with the file that runs."""
    found: dict[str, Path] = {}
    for root in analyses_dirs():
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*.ipynb")):
            if not path.name.startswith("."):
                found.setdefault(path.stem, path)
    return found


def available_notebooks() -> list[str]:
    """Names of the notebooks runnable by name (without ``.ipynb``), in lookup order (see
    :func:`analyses_dirs`; a shadowed name once)."""
    return list(_by_name())


def resolve_notebook(name_or_path: str | os.PathLike[str]) -> Path:
    """The notebook file to run.

    * A ``str`` is a *name*: ``"alignment_audit"`` or ``"alignment_audit.ipynb"``, looked up in
      the folders of :func:`analyses_dirs` only, in order. Names with path separators, ``..``, a
      leading dot or a leading ``~`` are refused, and so is a name whose file in a folder
      resolves (symlinks followed) outside that folder: running by name never reaches a
      notebook elsewhere.
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
    check_name_length(name)
    roots = analyses_dirs()
    where = ", ".join(str(r) for r in roots)
    known = ", ".join(available_notebooks()) or "none"
    if not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"refused notebook name {name!r}: a name is a file of the analyses folders ({where}; "
            f"no path separators, no '..'); available: {known}. To run a notebook elsewhere "
            "pass its path explicitly (Python: pathlib.Path(...); CLI: a path ending in .ipynb "
            f"such as ./mine.ipynb), or add its folder (${ANALYSES_ENV}, workbench --analyses)"
        )
    file = name if name.endswith(".ipynb") else name + ".ipynb"
    for root in roots:
        path = (root / file).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"refused notebook name {name!r}: it resolves outside {root}")
        if path.is_file():
            return path
    raise FileNotFoundError(f"no notebook {file!r} in {where}; available: {known}")


def notebook_argument(arg: str) -> Path:
    """A CLI argument -> notebook: a path when it ends in ``.ipynb`` and has a path separator
    (or is absolute), else a name (see :func:`resolve_notebook`)."""
    if arg.endswith(".ipynb") and (os.sep in arg or "/" in arg or os.path.isabs(arg)):
        return resolve_notebook(Path(arg))
    return resolve_notebook(arg)


def check_name_length(name: str) -> None:
    """``ValueError`` for a notebook name whose file name (``.ipynb`` added when missing) is
    over :data:`MAX_NAME` characters, which no file system holds."""
    limit = MAX_NAME if name.endswith(".ipynb") else MAX_NAME - len(".ipynb")
    if len(name) > limit:
        raise ValueError(f"notebook name too long ({len(name)} characters; at most {limit})")


def _normalise_type(text: str) -> tuple[str, bool]:
    """An annotation / type comment -> (one of _TYPES, whether None is accepted)."""
    text = text.strip().strip("'\"")
    optional = False
    m = re.fullmatch(r"Optional\[(.*)\]", text)
    if m:
        text, optional = m.group(1).strip(), True
    elif "|" in text and "[" not in text:  # int | None
        parts = [t.strip() for t in text.split("|")]
        rest = [t for t in parts if t not in ("None", "NoneType")]
        if len(rest) != 1:
            return "any", True
        text, optional = rest[0], len(rest) < len(parts)
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


@dataclass(frozen=True)
class _Assignment:
    """One top-level ``name = value  # comment`` of a parameters cell."""

    name: str
    source: str  # the value's text
    annotation: str  # the annotation, or the ``# type:`` comment's type, or "None"
    help: str  # the comment after the value, without a ``type:`` prefix
    line: int  # 1-based, in the cell
    text: str  # the cell's line ``line``


def _cell_assignments(source: str, where: str) -> list[_Assignment]:
    """The top-level assignments of a parameters cell, with their trailing comments.

    Read with :mod:`ast` and :mod:`tokenize` rather than papermill's line regex, which drops a
    line holding a second ``=`` (``# [range: >= 1]``). IPython magics (``%``, ``!`` lines) are
    skipped; a cell that is not Python otherwise is refused, naming the line.
    """
    lines = source.splitlines()
    code = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise ValueError(f"{where}, parameters cell line {e.lineno}: not valid Python "
                         f"({e.msg}); the parameters cell must run as written") from None
    comments: dict[int, tuple[int, str]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        value = node.value
        if not isinstance(target, ast.Name) or value is None:
            continue
        end = value.end_lineno or value.lineno
        col, comment = comments.get(end, (-1, ""))
        if col < (value.end_col_offset or 0):
            comment = ""
        type_text = ast.get_source_segment(code, annotation) if annotation is not None else None
        m = _TYPE_COMMENT.match(comment)
        if m:
            type_text, comment = type_text or m.group(1), m.group(2)
        out.append(_Assignment(
            name=target.id, source=ast.get_source_segment(code, value) or "",
            annotation=type_text or "None", help=comment.strip(), line=node.lineno,
            text=lines[node.lineno - 1].strip(),
        ))
    return out


class _PapermillInspection(logging.Filter):
    """Drops the warnings of papermill's own regex reading of the parameters cell (a line with
    a second ``=``, e.g. ``# [range: >= 1]``, is "unable to parse", so its parameter "unknown"):
    the cell is read by :func:`notebook_parameters`, and the values checked, before papermill
    runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Unable to parse line", "Passed unknown parameter"))


@contextlib.contextmanager
def papermill_inspection_quiet() -> Iterator[None]:
    """Around ``papermill.execute_notebook``: without papermill's misreadings of the
    parameters cell (see :class:`_PapermillInspection`); its other warnings pass."""
    quiet = _PapermillInspection()
    loggers = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def _clauses(help_text: str) -> tuple[str, str | None, str | None]:
    """A comment -> (the help without its clauses, the choices' text, the range's text)."""
    found: dict[str, str] = {}
    kept, pos = [], 0
    for m in _CLAUSE.finditer(help_text):
        if m.start() < pos:
            continue  # inside a clause already taken
        kind = m.group(1)
        if kind in found:
            raise ValueError(f"two [{kind}: ...] clauses; give one")
        ends = [i for i, ch in enumerate(help_text) if ch == "]" and i >= m.end()]
        if not ends:
            raise ValueError(f"the [{kind}: ...] clause is not closed with ']'")
        end = ends[0]
        if kind == "choices":  # a choice may hold "]": the first end that reads as literals
            end = next((i for i in ends if _choices_literal(help_text[m.end():i]) is not None),
                       end)
        found[kind] = help_text[m.end():end]
        kept.append(help_text[pos:m.start()])
        pos = end + 1
    kept.append(help_text[pos:])
    text = " ".join(" ".join(kept).split())
    return text, found.get("choices"), found.get("range")


def _choices_literal(text: str) -> tuple[Any, ...] | None:
    body = text.strip()
    if body.endswith(","):
        body = body[:-1]
    if not body.strip():
        return None
    try:
        value = ast.literal_eval(f"({body},)")
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, tuple) else None


def _with_constraints(spec: ParamSpec, choices: str | None, bounds: str | None) -> ParamSpec:
    """``spec`` with its declared choices and range; ``ValueError`` (without the line) for a
    clause that does not read, does not fit the type, or that the default breaks."""
    if choices is not None:
        values = _choices_literal(choices)
        if values is None:
            raise ValueError(f"[choices:{choices}] does not read as Python literals separated "
                             'by commas, e.g. [choices: "full", "small"] or [choices: 1, 2, 4]')
        coerced = []
        for v in values:
            try:
                c = coerce_value(spec, v)
            except ValueError:
                raise ValueError(f"the choice {_show(v)} is not of the parameter's type "
                                 f"({spec.type})") from None
            if c is None and not spec.optional:
                raise ValueError("None is not a choice of a parameter that cannot be None")
            coerced.append(c)
        spec = replace(spec, choices=tuple(coerced))
    if bounds is not None:
        if spec.type not in ("int", "float"):
            raise ValueError(f"[range:{bounds}] needs an int or float parameter; {spec.name!r} "
                             f"is {spec.type}")
        m, b = _BETWEEN.match(bounds), _BOUND.match(bounds)
        if m:
            lo, hi = _number(m.group(1)), _number(m.group(2))
            if lo > hi:
                raise ValueError(f"[range:{bounds}] is empty: {_show(lo)} > {_show(hi)}")
            spec = replace(spec, minimum=lo, maximum=hi)
        elif b:
            op, x = b.group(1), _number(b.group(2))
            if op in (">=", ">"):
                spec = replace(spec, minimum=x, exclusive_minimum=op == ">")
            else:
                spec = replace(spec, maximum=x, exclusive_maximum=op == "<")
        else:
            raise ValueError(f"[range:{bounds}] does not read; write {_RANGE_FORMS}")
    if spec.literal and not (spec.default is None and spec.optional):
        why = _violation(spec, spec.default)
        if why:
            raise ValueError(f"the default {_show(spec.default)} {why.split(', got ')[0]}")
    return spec


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, ParamSpec]:
    """The parameters of a notebook's ``parameters`` cell, with declared or inferred types,
    evaluated defaults and declared choices and ranges (see :class:`ParamSpec`), in cell order
    (a name assigned twice: the last assignment).

    ``ValueError`` naming the fix when the notebook has no cell tagged ``parameters``, and
    naming the cell's line for a declaration that does not hold (a clause that does not read,
    or a default outside its own choices or range).
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    index = _parameters_cell_index(nb)
    if index < 0:
        raise _no_parameters_cell(path)
    specs: dict[str, ParamSpec] = {}
    for a in _cell_assignments(str(nb.cells[index].source), path.name):
        try:
            default = ast.literal_eval(a.source)
            literal = True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default, literal = None, False
        if a.annotation != "None":
            type_, optional = _normalise_type(a.annotation)
        elif not literal or default is None:
            type_, optional = "any", True
        else:
            type_, optional = _literal_type(default), False
        try:
            help_text, choices, bounds = _clauses(a.help)
            spec = _with_constraints(ParamSpec(
                name=a.name, type=type_, default=default, help=help_text, source=a.source,
                optional=optional or (literal and default is None), literal=literal,
            ), choices, bounds)
        except ValueError as e:
            raise ValueError(f"{path.name}, parameters cell line {a.line} (`{a.text}`): "
                             f"{e}") from None
        specs[a.name] = spec
    return specs


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened to ``limit`` characters for messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _refuse(name: str, spec: ParamSpec, value: Any, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(
        f"parameter {name!r} must be {spec.type}{' or None' if spec.optional else ''}, "
        f"got {_show(value)}{extra}; default: {spec.source or spec.default!r}"
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


def _same(a: Any, b: Any) -> bool:
    """Equal, and of one kind (``True`` is not the choice ``1``; ``1`` is the choice ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _violation(spec: ParamSpec, value: Any) -> str | None:
    """Why a (coerced) value is outside the declared choices or range, else ``None``."""
    if value is None and spec.optional:
        return None
    if spec.choices is not None and not any(_same(value, c) for c in spec.choices):
        return (f"must be one of {', '.join(_show(c) for c in spec.choices)}, "
                f"got {_show(value)}")
    if spec.minimum is None and spec.maximum is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))
    if ok and spec.minimum is not None:
        ok = value > spec.minimum if spec.exclusive_minimum else value >= spec.minimum
    if ok and spec.maximum is not None:
        ok = value < spec.maximum if spec.exclusive_maximum else value <= spec.maximum
    if ok:
        return None
    bounds = replace(spec, choices=None).allowed()
    return f"must be {bounds}, got {_show(value)}"


def check_value(spec: ParamSpec, value: Any) -> Any:
    """``value`` coerced to the parameter's type (:func:`coerce_value`) and checked against
    its declared choices and range; ``ValueError`` naming the parameter and what is allowed:
    ``parameter 'steps' must be >= 1, got -5``, ``parameter 'organism' must be one of 'full',
    'small', got 'big'``."""
    coerced = coerce_value(spec, value)
    why = _violation(spec, coerced)
    if why:
        raise ValueError(f"parameter {spec.name!r} {why}")
    return coerced


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
    the wrong type (naming the parameter and its type), a value outside the declared choices or
    range (naming the allowed ones, see :func:`check_value`), and ``out_dir``, which the runner
    sets itself (unless ``allow_out_dir``).
    """
    specs = notebook_parameters(path)
    known = ", ".join(f"{s.name} ({s.type})" for s in specs.values()) or "none"
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in specs:
            raise ValueError(
                f"unknown parameter {_show(name)} for notebook {Path(path).name}; known "
                f"parameters: "
                f"{known}"
            )
        if name == OUT_DIR and not allow_out_dir:
            raise ValueError(
                f"parameter {OUT_DIR!r} is set by the runner (the run's own directory); "
                "do not pass it"
            )
        coerced = check_value(specs[name], value)
        _check_json(name, coerced)
        out[name] = coerced
    return out


def effective_parameters(specs: Mapping[str, ParamSpec], given: Mapping[str, Any]) -> dict:
    """The literal defaults overlaid with the given values, without ``out_dir``: what a run
    is identified by and what ``parameters.json`` holds."""
    merged = {n: s.default for n, s in specs.items() if s.literal and n != OUT_DIR}
    merged.update({n: v for n, v in given.items() if n != OUT_DIR})
    return merged
