"""workbench.runs: parameter checks (no kernel), published runs, failures, sweeps (local, Ray).

Every run here executes a small toy notebook written with nbformat into a temp dir: a
``parameters`` cell, a cell that prints, one that may sleep and SIGKILL its own kernel, one that
may raise, and one that writes a data file and a record to ``out_dir``. Whether a toy run fails
hangs on a marker file named by a parameter, so removing the file lets the *same* run id (same
notebook, same parameters) complete on a re-run.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from workbench import runs
from workbench.fingerprint import file_sha256
from workbench.reports import export_html
from workbench.runs import RunInfo

PARAMS_CELL = """\
x = 1
rate = 0.5
flag = False
tags = ["a"]
opts = {"k": 1}
limit = None
mode = "ok"  # "ok", "raise", "kill" or "kill_runner"; acts only while `marker` exists
marker = ""
sleep = 0.0
device = "auto"
out_dir = "."
"""
CELLS = [
    'import hashlib, json, os, signal, sys, time\nprint("hello from the toy", x, rate)',
    "armed = bool(marker) and os.path.exists(marker)\ntime.sleep(sleep)\n"
    'if armed and mode == "kill":\n    os.kill(os.getpid(), signal.SIGKILL)\n'
    'if armed and mode == "kill_runner":\n    os.kill(os.getppid(), signal.SIGKILL)',
    'if armed and mode == "raise":\n    raise ValueError(f"toy failure x={x}")',
    # a data file named by an absolute path, and a record naming it, in out_dir
    'data = os.path.abspath(os.path.join(out_dir, "toy.jsonl"))\n'
    'with open(data, "w") as f:\n    f.write(json.dumps({"x": x}) + "\\n")\n'
    "sha = hashlib.sha256(open(data, 'rb').read()).hexdigest()\n"
    'record = {"schema_version": "1.0", "title": "toy <record>", "parameters": {"x": x},\n'
    '  "subject": {"name": "toy-subject", "source": "organism", "fingerprint": "ab" * 32,\n'
    '              "files": []},\n'
    '  "dictionary": {"name": "toy-sae", "hook_name": "blocks.0.hook_resid_post",\n'
    '                 "fingerprint": "cd" * 32, "files": []},\n'
    '  "data": {"toy": {"path": data, "sha256": sha, "n_records": 1}}}\n'
    'json.dump(record, open(os.path.join(out_dir, "record.json"), "w"))\nprint("done", x)',
]


def write_toy(path: Path, *, params: bool = True) -> Path:
    nb = new_notebook()
    cell = new_code_cell(PARAMS_CELL)
    if params:
        cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(new_code_cell(c) for c in CELLS)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="session", autouse=True)
def python3_kernel() -> None:
    """The runs need a ``python3`` kernelspec; install one for this environment if missing."""
    try:
        runs._run.check_kernel("python3")
    except ValueError:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                       check=True, capture_output=True)
        runs._run.check_kernel("python3")


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return write_toy(tmp_path / "nbs" / "toy.ipynb")


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if papermill is asked to execute anything."""
    import papermill

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("papermill.execute_notebook was called: a kernel would start")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


def _mtime(info: RunInfo) -> int:
    assert info.run_dir is not None
    return (info.run_dir / "status.json").stat().st_mtime_ns


def _external(html: str) -> list[str]:
    pattern = re.compile(
        r"""<script[^>]*\bsrc\s*=|\b(?:src|href|action|data)\s*=\s*["']?\s*(?:https?:)?//"""
        r"""|url\(\s*["']?\s*(?:https?:)?//|@import\b""", re.I)
    return [html[max(0, m.start() - 40): m.end() + 40] for m in pattern.finditer(html)]


# ----------------------------------------------------------------------- parameters, no kernel


def test_notebook_parameters_types_and_defaults(toy: Path) -> None:
    specs = runs.notebook_parameters(toy)
    got = {n: (s.type, s.default) for n, s in specs.items()}
    assert got == {
        "x": ("int", 1), "rate": ("float", 0.5), "flag": ("bool", False),
        "tags": ("list", ["a"]), "opts": ("dict", {"k": 1}), "limit": ("any", None),
        "mode": ("str", "ok"), "marker": ("str", ""), "sleep": ("float", 0.0),
        "device": ("str", "auto"), "out_dir": ("str", "."),
    }
    assert specs["mode"].help.startswith('"ok", "raise"')


def test_validate_parameters_coerces_cli_strings(toy: Path, no_kernel: None) -> None:
    got = runs.validate_parameters(toy, {
        "x": "3", "rate": "0.25", "flag": "true", "tags": '["b", "c"]', "opts": '{"k": 2}',
        "limit": "5", "mode": "raise", "sleep": 2,
    })
    assert got == {"x": 3, "rate": 0.25, "flag": True, "tags": ["b", "c"], "opts": {"k": 2},
                   "limit": 5, "mode": "raise", "sleep": 2.0}
    assert isinstance(got["sleep"], float)
    assert runs.validate_parameters(toy, {"flag": "False", "limit": "none"}) == {
        "flag": False, "limit": None}
    assert runs.validate_parameters(toy, {"x": 7, "tags": ("z",)}) == {"x": 7, "tags": ["z"]}
    assert runs.validate_parameters(toy, {"limit": "not json"}) == {"limit": "not json"}


def test_validate_parameters_refuses_unknown_names(toy: Path, no_kernel: None) -> None:
    with pytest.raises(ValueError, match=r"unknown parameter 'sed'") as e:
        runs.validate_parameters(toy, {"sed": 1})
    for known in ("x (int)", "rate (float)", "flag (bool)", "mode (str)", "device (str)"):
        assert known in str(e.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("x", "abc", r"parameter 'x' must be int, got 'abc'"),
    ("x", "3.5", r"parameter 'x' must be int"),
    ("x", True, r"parameter 'x' must be int"),
    ("rate", "fast", r"parameter 'rate' must be float, got 'fast'"),
    ("flag", "maybe", r"parameter 'flag' must be bool.*true or false"),
    ("tags", "[1,", r"parameter 'tags' must be list.*not JSON"),
    ("tags", '{"a": 1}', r"parameter 'tags' must be list"),
    ("opts", "[1]", r"parameter 'opts' must be dict"),
    ("mode", 3, r"parameter 'mode' must be str, got 3"),
    ("x", None, r"parameter 'x' must be int, got None"),
])
def test_validate_parameters_refuses_wrong_types(
    toy: Path, no_kernel: None, name: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        runs.validate_parameters(toy, {name: value})


def test_out_dir_is_set_by_the_runner(toy: Path, no_kernel: None) -> None:
    with pytest.raises(ValueError, match="'out_dir' is set by the runner"):
        runs.validate_parameters(toy, {"out_dir": "/tmp/elsewhere"})


def test_notebook_without_parameters_cell_names_the_fix(tmp_path: Path, no_kernel: None) -> None:
    plain = write_toy(tmp_path / "plain.ipynb", params=False)
    with pytest.raises(ValueError, match=r"no cell tagged 'parameters'.*tag .*`parameters`"):
        runs.notebook_parameters(plain)
    with pytest.raises(ValueError, match=r"no cell tagged 'parameters'"):
        runs.run(plain, {}, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_resolve_notebook_by_name_stays_in_the_analyses_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyses = tmp_path / "analyses"
    write_toy(analyses / "toy.ipynb")
    outside = write_toy(tmp_path / "outside.ipynb")
    (analyses / "escape.ipynb").symlink_to(outside)
    monkeypatch.setenv("WORKBENCH_ANALYSES", str(analyses))
    assert runs.analyses_dir() == analyses.resolve()
    assert runs.resolve_notebook("toy") == (analyses / "toy.ipynb").resolve()
    assert runs.resolve_notebook("toy.ipynb") == (analyses / "toy.ipynb").resolve()
    for name in ("../outside", "../outside.ipynb", "sub/toy", "..", ".toy", "~toy",
                 str(outside), "nbs\\toy"):
        with pytest.raises(ValueError, match=r"refused notebook name.*available: escape, toy"):
            runs.resolve_notebook(name)
    with pytest.raises(ValueError, match="resolves outside"):
        runs.resolve_notebook("escape")
    with pytest.raises(FileNotFoundError, match=r"no notebook 'missing.ipynb'.*available"):
        runs.resolve_notebook("missing")
    # explicit paths: allowed anywhere, when given as paths, if the file exists
    assert runs.resolve_notebook(outside) == outside.resolve()
    with pytest.raises(FileNotFoundError):
        runs.resolve_notebook(tmp_path / "nope.ipynb")
    # the CLI's rule: a path ending in .ipynb with a separator is a path, anything else a name
    assert runs.notebook_argument(str(outside)) == outside.resolve()
    assert runs.notebook_argument("toy") == (analyses / "toy.ipynb").resolve()
    with pytest.raises(ValueError, match="refused notebook name"):
        runs.notebook_argument("../outside")


def test_refused_runs_and_sweeps_start_no_kernel(
    toy: Path, tmp_path: Path, no_kernel: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    with pytest.raises(ValueError, match="must be int"):
        runs.run(toy, {"x": "abc"}, runs_root=root)
    with pytest.raises(ValueError, match="unknown parameter"):
        runs.run(toy, {"y": 1}, runs_root=root)
    monkeypatch.setenv("WORKBENCH_ANALYSES", str(toy.parent))
    with pytest.raises(ValueError, match="refused notebook name"):
        runs.run("../toy", {}, runs_root=root)
    with pytest.raises(ValueError, match=r"grid entry 2 \{'x': 'two'\}.*must be int"):
        runs.sweep(toy, [{"x": 0}, {"x": 1}, {"x": "two"}], runs_root=root, progress=False)
    with pytest.raises(ValueError, match=r"no Jupyter kernel 'no-such-kernel'.*ipykernel install"):
        runs.run(toy, {}, runs_root=root, kernel="no-such-kernel")
    assert not root.exists()


def test_run_id_is_notebook_and_effective_parameters(toy: Path, tmp_path: Path) -> None:
    a = runs.prepare(toy, {})
    assert runs.prepare(toy, {"x": 1}).id == a.id  # the default, spelled out
    assert runs.prepare(toy, {"x": "1"}).id == a.id
    assert runs.prepare(toy, {"x": 2}).id != a.id
    assert re.fullmatch(r"[0-9a-f]{12}", a.id)
    assert "out_dir" not in a.parameters and a.parameters["x"] == 1
    other = write_toy(tmp_path / "other.ipynb")
    nb = nbformat.read(other, as_version=4)
    nb.cells.append(new_markdown_cell("a note"))
    nbformat.write(nb, other)
    assert runs.prepare(other, {}).id != a.id


DECLARED = """\
organism = "full"  # the organism [choices: "full", "small"]
steps = 600  # fine-tune optimiser steps [range: >= 1]
frac = 0.1  # fraction screened [range: 0..1]
n = 5  # draws [range: 1..100]
eps: float = 0.5  # [range: > 0] step size
cap: int | None = None  # type ignored here [range: < 10]
width = 2  # type: int
out_dir = "."
"""


def _declared(path: Path, params: str = DECLARED) -> Path:
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}),
                             new_code_cell("print(steps)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_parameters_cell_declares_choices_and_ranges(tmp_path: Path) -> None:
    specs = runs.notebook_parameters(_declared(tmp_path / "declared.ipynb"))
    got = {n: (s.type, s.default, s.help, s.choices, s.minimum, s.exclusive_minimum, s.maximum,
               s.exclusive_maximum, s.optional) for n, s in specs.items()}
    assert got == {
        "organism": ("str", "full", "the organism", ("full", "small"), None, False, None, False,
                     False),
        # papermill's own inspection drops this line (a second "="): read here with ast
        "steps": ("int", 600, "fine-tune optimiser steps", None, 1, False, None, False, False),
        "frac": ("float", 0.1, "fraction screened", None, 0, False, 1, False, False),
        "n": ("int", 5, "draws", None, 1, False, 100, False, False),
        "eps": ("float", 0.5, "step size", None, 0, True, None, False, False),
        "cap": ("int", None, "type ignored here", None, None, False, 10, True, True),
        "width": ("int", 2, "", None, None, False, None, False, False),
        "out_dir": ("str", ".", "", None, None, False, None, False, False),
    }
    assert [specs[n].allowed() for n in ("organism", "steps", "frac", "eps", "cap", "width")] == [
        "one of 'full', 'small'", ">= 1", ">= 0 and <= 1", "> 0", "< 10", ""]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("steps", "-5", "parameter 'steps' must be >= 1, got -5"),
    ("steps", 0, "parameter 'steps' must be >= 1, got 0"),
    ("organism", "big", "parameter 'organism' must be one of 'full', 'small', got 'big'"),
    ("frac", "1.5", "parameter 'frac' must be >= 0 and <= 1, got 1.5"),
    ("frac", "nan", "parameter 'frac' must be >= 0 and <= 1, got nan"),
    ("n", 101, "parameter 'n' must be >= 1 and <= 100, got 101"),
    ("eps", 0, "parameter 'eps' must be > 0, got 0.0"),
    ("cap", 10, "parameter 'cap' must be < 10, got 10"),
    ("organism", "x" * 100, "parameter 'organism' must be one of 'full', 'small', got "
     f"'{'x' * 56}..."),
])
def test_values_outside_choices_and_ranges_are_refused(
    tmp_path: Path, no_kernel: None, name: str, value: Any, message: str
) -> None:
    nb = _declared(tmp_path / "declared.ipynb")
    with pytest.raises(ValueError) as e:
        runs.validate_parameters(nb, {name: value})
    assert str(e.value) == message
    with pytest.raises(ValueError, match=re.escape(message)):
        runs.run(nb, {name: value}, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_values_inside_choices_and_ranges_are_accepted(tmp_path: Path, no_kernel: None) -> None:
    nb = _declared(tmp_path / "declared.ipynb")
    assert runs.validate_parameters(nb, {
        "organism": "small", "steps": "1", "frac": 1, "n": "100", "eps": "1e-9", "cap": "none",
    }) == {"organism": "small", "steps": 1, "frac": 1.0, "n": 100, "eps": 1e-9, "cap": None}
    assert runs.validate_parameters(nb, {"frac": 0, "cap": 9}) == {"frac": 0.0, "cap": 9}


@pytest.mark.parametrize(("line", "why"), [
    ("steps = 0  # steps [range: >= 1]", "the default 0 must be >= 1"),
    ('organism = "big"  # [choices: "full", "small"]',
     "the default 'big' must be one of 'full', 'small'"),
    ('organism = "a"  # [range: 0..1]',
     "[range: 0..1] needs an int or float parameter; 'organism' is str"),
    ("n = 1  # [range: 5..1]", "[range: 5..1] is empty: 5 > 1"),
    ("n = 1  # [range: 1..]", "[range: 1..] does not read; write a..b (inclusive), >= a, > a, "
     "<= b or < b, with a and b numbers"),
    ('n = 1  # [choices: 1, "a"]', "the choice 'a' is not of the parameter's type (int)"),
    ("n = 1  # [choices: 1, 2", "the [choices: ...] clause is not closed with ']'"),
    ("n = 1  # [choices: ]", "[choices: ] does not read as Python literals separated by "
     'commas, e.g. [choices: "full", "small"] or [choices: 1, 2, 4]'),
    ("n = 1  # [range: >= 0] [range: <= 3]", "two [range: ...] clauses; give one"),
])
def test_bad_declarations_name_the_line(tmp_path: Path, line: str, why: str) -> None:
    nb = _declared(tmp_path / "bad.ipynb", f'seed = 0\n{line}\nout_dir = "."')
    with pytest.raises(ValueError) as e:
        runs.notebook_parameters(nb)
    assert str(e.value) == f"bad.ipynb, parameters cell line 2 (`{line}`): {why}"


def test_parameters_cell_that_is_not_python_names_the_line(tmp_path: Path) -> None:
    nb = _declared(tmp_path / "bad.ipynb", "%matplotlib inline\nseed = 0\nx = (1,\n")
    with pytest.raises(ValueError) as e:
        runs.notebook_parameters(nb)
    assert str(e.value) == ("bad.ipynb, parameters cell line 3: not valid Python ('(' was never "
                            "closed); the parameters cell must run as written")


def test_papermill_misreadings_of_a_declared_cell_are_silenced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """papermill reads the cell with a regex that gives up on a second '=' ([range: >= 1]) and
    then calls the parameter unknown; around its execution those two warnings are dropped."""
    import papermill

    from workbench.runs._params import papermill_inspection_quiet

    nb = str(_declared(tmp_path / "declared.ipynb"))
    with caplog.at_level("WARNING", logger="papermill"):
        papermill.inspect_notebook(nb)
    assert [r.getMessage() for r in caplog.records] == [
        "Unable to parse line 2 'steps = 600  # fine-tune optimiser steps [range: >= 1]'."]
    caplog.clear()
    with caplog.at_level("WARNING", logger="papermill"), papermill_inspection_quiet():
        papermill.inspect_notebook(nb)
        logging.getLogger("papermill").warning("Passed unknown parameter: steps")
        logging.getLogger("papermill").warning("a warning of its own")
    assert [r.getMessage() for r in caplog.records] == ["a warning of its own"]


def test_cli_refuses_values_outside_the_declaration(
    tmp_path: Path, no_kernel: None, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = str(_declared(tmp_path / "nbs" / "declared.ipynb"))
    root = str(tmp_path / "runs")
    assert runs.main_run([nb, "-p", "steps", "-5", "--runs-root", root]) == 2
    assert capsys.readouterr().err == "workbench run: parameter 'steps' must be >= 1, got -5\n"
    assert runs.main_run([nb, "-p", "organism", "big", "--runs-root", root]) == 2
    assert capsys.readouterr().err == ("workbench run: parameter 'organism' must be one of "
                                       "'full', 'small', got 'big'\n")
    grid = tmp_path / "grid.yaml"
    grid.write_text("steps: [10, -5]\n")
    assert runs.main_sweep([nb, "--grid", str(grid), "--runs-root", root]) == 2
    assert "parameter 'steps' must be >= 1, got -5" in capsys.readouterr().err
    assert runs.main_run(["a" * 5000, "--runs-root", root]) == 2
    assert capsys.readouterr().err == (
        "workbench run: notebook name too long (5000 characters; at most 249)\n")
    assert not Path(root).exists()
    with pytest.raises(ValueError, match=r"name too long \(5000 characters; at most 249\)"):
        runs.resolve_notebook("a" * 5000)  # from Python too, not only the CLI


def test_grids(tmp_path: Path) -> None:
    assert runs.expand_grid({"x": [0, 1], "mode": ["ok", "raise"], "rate": 0.1}) == [
        {"x": 0, "mode": "ok", "rate": 0.1}, {"x": 0, "mode": "raise", "rate": 0.1},
        {"x": 1, "mode": "ok", "rate": 0.1}, {"x": 1, "mode": "raise", "rate": 0.1},
    ]
    assert runs.expand_grid([{"x": 0}, {"x": 5, "flag": True}]) == [{"x": 0},
                                                                    {"x": 5, "flag": True}]
    (tmp_path / "g.yaml").write_text("x: [0, 1, 2]\nflag: [true, false]\n")
    assert len(runs.expand_grid(runs.load_grid(tmp_path / "g.yaml"))) == 6
    (tmp_path / "l.yaml").write_text("runs:\n  - {x: 0}\n  - {x: 1, mode: raise}\n")
    assert runs.load_grid(tmp_path / "l.yaml") == [{"x": 0}, {"x": 1, "mode": "raise"}]
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="a grid is a mapping"):
        runs.load_grid(tmp_path / "bad.yaml")


def test_ray_options_and_missing_ray(toy: Path, monkeypatch: pytest.MonkeyPatch,
                                     no_kernel: None) -> None:
    assert runs.ray_options(runs.prepare(toy, {"device": "cuda"})) == {
        "num_cpus": 1, "num_gpus": 1, "max_retries": 0}
    assert runs.ray_options(runs.prepare(toy, {"device": "cuda:1"}))["num_gpus"] == 1
    assert "num_gpus" not in runs.ray_options(runs.prepare(toy, {"device": "cpu"}))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'workbench\[ray\]'"):
        runs.sweep(toy, {"x": [0]}, executor="ray", runs_root=toy.parent / "runs")
    with pytest.raises(ValueError, match="executor must be one of"):
        runs.sweep(toy, {"x": [0]}, executor="dask")


# ----------------------------------------------------------------------------- one run


def test_run_publishes_every_file(toy: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    info = runs.run(toy, {"x": "4", "tags": '["q"]'}, runs_root=root, progress=True)
    assert info.status == "complete" and info.ok and not info.skipped
    assert info.run_dir == root.resolve() / info.id
    files = {p.name for p in info.run_dir.iterdir()}
    assert files == {"notebook.ipynb", "report.html", "record.json", "parameters.json",
                     "status.json", "log.txt", "toy.jsonl"}
    assert [p.name for p in root.iterdir()] == [info.id]  # no staging dir left
    params = json.loads((info.run_dir / "parameters.json").read_text())
    assert params["x"] == 4 and params["tags"] == ["q"] and params["mode"] == "ok"
    assert params == info.parameters and "out_dir" not in params
    status = json.loads((info.run_dir / "status.json").read_text())
    assert status["status"] == "complete" and status["id"] == info.id
    assert status["failing_cell"] is None and status["attempts"] == 1
    assert status["notebook_sha256"] == file_sha256(toy)
    assert datetime.fromisoformat(status["finished"]) > datetime.fromisoformat(status["started"])
    # the executed notebook: injected parameters, outputs
    nb = nbformat.read(info.run_dir / "notebook.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "x = 4" in injected[0].source
    assert 'out_dir = "."' in injected[0].source
    log = (info.run_dir / "log.txt").read_text()
    assert "hello from the toy 4 0.5" in log and "done 4" in log and "status: complete" in log
    # the record, copied from out_dir, its staging paths pointing into the published dir
    record = json.loads((info.run_dir / "record.json").read_text())
    assert info.record == info.run_dir / "record.json"
    data = Path(record["data"]["toy"]["path"])
    assert data == info.run_dir / "toy.jsonl" and data.is_file()
    assert file_sha256(data) == record["data"]["toy"]["sha256"]
    # the report: offline, with the header
    assert info.report == info.run_dir / "report.html"
    html = info.report.read_text()
    assert f"<title>toy — run {info.id}</title>" in html
    assert 'data-wb-report-header="1"' in html and "Status: complete" in html
    assert "<td><code>4</code></td>" in html and "<td><code>[&quot;q&quot;]</code></td>" in html
    assert "ab" * 32 in html and "cd" * 32 in html and record["data"]["toy"]["sha256"] in html
    assert "blocks.0.hook_resid_post" in html and "toy &lt;record&gt;" in html
    assert _external(html) == []
    # listed, found, and not run again
    assert [i.id for i in runs.list_runs(root)] == [info.id]
    assert runs.get_run(info.id, root).status == "complete"
    assert runs.get_run(info.id[:5], root).id == info.id
    with pytest.raises(KeyError, match="no run"):
        runs.get_run("ffffffffffff", root)
    mtime = _mtime(info)
    again = runs.run(toy, {"x": 4, "tags": ["q"]}, runs_root=root)
    assert again.skipped and again.id == info.id and _mtime(again) == mtime
    forced = runs.run(toy, {"x": 4, "tags": ["q"]}, runs_root=root, force=True, progress=False)
    assert not forced.skipped and forced.started != info.started and forced.ok


def test_failing_run_is_published_failed_naming_the_cell(toy: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    marker = tmp_path / "fail"
    marker.touch()
    info = runs.run(toy, {"mode": "raise", "marker": str(marker), "x": 7}, runs_root=root,
                    progress=False, retries=2)
    assert info.status == "failed" and not info.ok
    assert info.attempts == 1  # a cell error is not retried
    cell = info.failing_cell
    assert cell is not None
    assert cell["index"] == 3  # the notebook's own 4th cell (parameters cell = 0)
    assert cell["source"] == 'if armed and mode == "raise":'
    assert (cell["ename"], cell["evalue"]) == ("ValueError", "toy failure x=7")
    assert cell["kernel_error"] is False
    assert info.run_dir == root.resolve() / info.id  # published, visibly failed
    status = json.loads((info.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["failing_cell"] == cell
    nb = nbformat.read(info.run_dir / "notebook.ipynb", as_version=4)
    assert nb.cells[cell["executed_index"]].source.startswith('if armed and mode == "raise"')
    assert not (info.run_dir / "record.json").exists()
    log = (info.run_dir / "log.txt").read_text()
    assert "FAILED: cell 3 (`if armed and mode == \"raise\":`): ValueError: toy failure x=7" in log
    html = (info.run_dir / "report.html").read_text()
    assert "wb-status-failed" in html and "toy failure x=7" in html
    # the same id again, cause removed: the failed run is replaced
    marker.unlink()
    again = runs.run(toy, {"mode": "raise", "marker": str(marker), "x": 7}, runs_root=root,
                     progress=False)
    assert again.id == info.id and again.ok and not again.skipped
    assert sorted(p.name for p in root.iterdir()) == [info.id]


def test_run_without_its_report_is_published_failed(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook that ran but whose report cannot be exported is not 'complete': as on a GPU
    machine where the package was installed with ``pip --target`` and nbconvert found no ``lab``
    template. A rerun once the cause is gone replaces it."""
    import nbconvert.exporters.templateexporter as te

    empty = tmp_path / "no-templates"
    empty.mkdir()
    real = te.jupyter_path
    monkeypatch.setattr(te, "jupyter_path", lambda *parts: [str(empty.joinpath(*parts))])
    root = tmp_path / "runs"
    info = runs.run(toy, {"x": 4}, runs_root=root, progress=False)
    assert info.status == "failed" and not info.ok and info.failing_cell is None
    assert info.error is not None
    assert info.error.startswith("report.html not written: ValueError: No template sub-directory "
                                 "with name 'lab'")
    assert "the notebook ran to the end" in info.error
    assert info.report is None and info.run_dir == root.resolve() / info.id
    assert not (info.run_dir / "report.html").exists()
    assert json.loads((info.run_dir / "status.json").read_text())["status"] == "failed"
    nb = nbformat.read(info.run_dir / "notebook.ipynb", as_version=4)  # kept for inspection
    assert nb.cells[-1].outputs, "the executed notebook keeps its outputs"
    assert [i.status for i in runs.list_runs(root)] == ["failed"]

    monkeypatch.setattr(te, "jupyter_path", real)
    again = runs.run(toy, {"x": 4}, runs_root=root, progress=False)
    assert again.id == info.id and again.ok and not again.skipped
    assert again.report is not None and again.report.is_file() and again.error is None


def test_kernel_start_errors_are_retried(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import papermill

    real = papermill.execute_notebook
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    info = runs.run(toy, {"x": 11}, runs_root=tmp_path / "runs", progress=False, retries=1)
    assert info.ok and info.attempts == 2 and len(calls) == 2
    log = (info.run_dir / "log.txt").read_text()  # type: ignore[operator]
    assert "earlier attempt failed: RuntimeError: Kernel died before replying" in log
    calls.clear()
    info = runs.run(toy, {"x": 12}, runs_root=tmp_path / "runs", progress=False, retries=0)
    assert info.status == "failed" and info.failing_cell is None
    assert info.error == "RuntimeError: Kernel died before replying to kernel_info"
    assert runs.is_kernel_error(RuntimeError("Kernel didn't respond in 60 seconds"))
    assert not runs.is_kernel_error(ValueError("boom"))


def test_export_html_header(tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_markdown_cell("# body")])
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, src)
    plain = export_html(src, tmp_path / "plain.html").read_text()
    assert "wb-report-header" not in plain and "<title>n</title>" in plain
    record = {"title": "R", "subject": {"name": "s<1>", "fingerprint": "11" * 32,
                                        "files": [{"path": "m.safetensors", "sha256": "22" * 32}]},
              "dictionary": None, "data": {"d": {"path": "d.jsonl", "sha256": "33" * 32,
                                                 "n_records": 9}}}
    (tmp_path / "record.json").write_text(json.dumps(record))
    html = export_html(src, tmp_path / "h.html", title="T <&>", parameters={"seed": 3},
                       record=tmp_path / "record.json", status="complete").read_text()
    assert "<title>T &lt;&amp;&gt;</title>" in html and "<h1>T &lt;&amp;&gt;</h1>" in html
    assert html.index("wb-report-header") < html.index(">body<")
    for sha in ("11" * 32, "22" * 32, "33" * 32):
        assert sha in html
    assert "s&lt;1&gt;" in html and "d (9 records)" in html and "m.safetensors" in html
    assert "<td>seed</td><td><code>3</code></td>" in html
    assert _external(html) == []


# ----------------------------------------------------------------------------- sweeps


def _grid(marker: Path, mode: str, xs: list[int]) -> list[dict[str, Any]]:
    """Four runs; the third fails (`mode`) while `marker` exists. Each sleeps a little, so
    runs overlap and the killed kernel dies mid-way through its cells."""
    return [{"x": x, "sleep": 0.3, **({"mode": mode, "marker": str(marker)} if i == 2 else {})}
            for i, x in enumerate(xs)]


def _max_overlap(infos: list[RunInfo]) -> int:
    events = []
    for i in infos:
        assert i.started and i.finished
        events += [(datetime.fromisoformat(i.started), 1),
                   (datetime.fromisoformat(i.finished), -1)]
    level = peak = 0
    for _, step in sorted(events):
        level += step
        peak = max(peak, level)
    return peak


def _check_sweep_then_rerun(toy: Path, root: Path, marker: Path, mode: str, xs: list[int],
                            executor: str, expect: tuple[str, str]) -> None:
    marker.touch()
    grid = _grid(marker, mode, xs)
    t0 = time.perf_counter()
    infos = runs.sweep(toy, grid, executor=executor, workers=2, runs_root=root, retries=1,
                       progress=False)
    first = time.perf_counter() - t0
    assert [i.status for i in infos] == ["complete", "complete", "failed", "complete"]
    assert [i.parameters["x"] for i in infos] == xs
    bad = infos[2]
    assert bad.failing_cell is not None
    assert (bad.failing_cell["ename"], bad.failing_cell["index"]) == expect
    if mode == "kill":  # a dead kernel is retried once (retries=1), then the run fails
        assert bad.attempts == 2 and bad.failing_cell["kernel_error"] is True
        log = (root / bad.id / "log.txt").read_text()
        assert "earlier attempt failed: cell 2" in log and "DeadKernelError: Kernel died" in log
    else:  # a cell error is not retried
        assert bad.attempts == 1 and bad.failing_cell["kernel_error"] is False
    assert sorted(p.name for p in root.iterdir()) == sorted(i.id for i in infos)
    assert _max_overlap([i for i in infos if i.attempts == 1]) <= 2
    mtimes = {i.id: _mtime(i) for i in infos}
    # the cause removed: only the failed run executes again
    marker.unlink()
    t0 = time.perf_counter()
    again = runs.sweep(toy, grid, executor=executor, workers=2, runs_root=root, progress=False)
    rerun = time.perf_counter() - t0
    assert [i.id for i in again] == [i.id for i in infos]
    assert [i.status for i in again] == ["complete"] * 4
    assert [i.skipped for i in again] == [True, True, False, True]
    for before, after in zip(infos, again, strict=True):
        if before.ok:
            assert _mtime(after) == mtimes[before.id] and after.started == before.started
    assert again[2].started != bad.started and again[2].attempts == 1
    print(f"{executor} sweep ({mode}): 4 runs {first:.1f} s, re-run of 1: {rerun:.1f} s")


def test_local_sweep_one_cell_error_then_rerun(toy: Path, tmp_path: Path) -> None:
    _check_sweep_then_rerun(toy, tmp_path / "runs", tmp_path / "raise-marker", "raise",
                            [0, 1, 2, 3], "local", ("ValueError", 3))


def test_local_sweep_killed_kernel_then_rerun(toy: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _check_sweep_then_rerun(toy, root, tmp_path / "kill-marker", "kill", [10, 11, 12, 13],
                            "local", ("DeadKernelError", 2))


def test_local_sweep_runner_killed_is_published_failed(toy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "kill-runner"
    marker.touch()
    root = tmp_path / "runs"
    # one worker: its runner process dies in the second run and is replaced for the third
    grid = [{"x": 30}, {"x": 31, "mode": "kill_runner", "marker": str(marker)}, {"x": 32}]
    infos = runs.sweep(toy, grid, workers=1, runs_root=root, progress=False)
    assert [i.status for i in infos] == ["complete", "failed", "complete"]
    dead = infos[1]
    assert dead.error is not None and "runner process exited with code -9" in dead.error
    assert dead.run_dir == root.resolve() / dead.id
    assert {"parameters.json", "status.json", "log.txt"} <= {p.name for p in dead.run_dir.iterdir()}
    assert sorted(p.name for p in root.iterdir()) == sorted(i.id for i in infos)
    assert [i.status for i in runs.list_runs(root)] == ["complete", "failed", "complete"]
    assert "FAILED: runner process exited" in (dead.run_dir / "log.txt").read_text()


def test_ray_sweep_one_killed_then_rerun(toy: Path, tmp_path: Path) -> None:
    import ray

    assert not ray.is_initialized()
    _check_sweep_then_rerun(toy, tmp_path / "runs", tmp_path / "kill-marker", "kill",
                            [40, 41, 42, 43], "ray", ("DeadKernelError", 2))
    assert not ray.is_initialized()  # the sweep started Ray and shut it down


def test_cli_helpers(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "runs")
    assert runs.main_run([str(toy), "-p", "x", "abc", "--runs-root", root]) == 2
    assert "parameter 'x' must be int, got 'abc'" in capsys.readouterr().err
    assert runs.main_run([str(toy), "-p", "x", "5", "--runs-root", root, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and '"x": 5' in out
    grid = tmp_path / "grid.yaml"
    grid.write_text("x: [5]\n")
    assert runs.main_sweep([str(toy), "--grid", str(grid), "--runs-root", root,
                            "--no-progress"]) == 0
    assert "already complete, skipped" in capsys.readouterr().out
    assert runs.main_runs(["list", "--runs-root", root]) == 0
    assert "complete" in capsys.readouterr().out


def test_demo_headline_names_each_patch_with_its_strength(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``workbench demo``'s headline: the plain ablation, then the selective patch with its kind
    and (when partial) its strength, each cut beside its retention, from the record's figures."""
    from workbench.cli import _print_headline

    def patch(kind: str, strength: float, cut: float, kept: float) -> dict[str, Any]:
        return {"patch": {"kind": kind, "strength": strength},
                "efficacy": {"em_cut": cut, "retention": kept, "random_em_cut": 0.018,
                             "base_misaligned": 0.147, "tuned_misaligned": 0.376,
                             "ablated_misaligned": 0.029}}

    record = {"title": "Alignment audit: t",
              "forecast": {"risk": 0.182, "seconds": 0.1,
                           "rate": {"risk": 1234.5, "step": "adam", "seconds": 0.04}},
              "patches": [patch("ablate", 1.0, 1.518, 0.252), patch("ablate", 0.5, 0.962, 0.855)],
              "context_audits": [{"misaligned_a": 0.299, "framing_a": "eval",
                                  "misaligned_b": 0.485, "framing_b": "deploy"}]}
    (tmp_path / "record.json").write_text(json.dumps(record))
    _print_headline(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert "  rate forecast +1.23e+03 (the misaligned rate's first-order rise, adam step, in " \
           "0.04 s)" in lines
    assert "  misaligned off-domain: base 14.7%, tuned 37.6% (measured +22.9 points), with the " \
           "misalignment direction ablated 2.9%" in lines
    assert "  ablate: EM cut 151.8%, keeping 25.2% of what the fine-tune learned in its own " \
           "domain (random directions: cut 1.8%)" in lines
    assert "  selective ablate at strength 0.5: EM cut 96.2%, keeping 85.5% of what the " \
           "fine-tune learned in its own domain (random directions: cut 1.8%)" in lines
    assert "  deployment context: misaligned 29.9% under eval, 48.5% under deploy" in lines
