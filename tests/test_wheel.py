"""The installed package works outside the checkout (acceptance: issue 12, point 9).

The wheel is built from this checkout (``pip wheel --no-deps --no-build-isolation``; the JS
bundles are already built by ``npm run build`` in ``make test``, so the hatch hook skips npm) and
installed with its ``lab`` extra into a venv of its own, without the checkout's site-packages.
From a temporary folder, not the checkout, that venv's ``workbench demo --small`` runs the
flagship from the analyses the wheel carries (``site-packages/workbench/analyses``), and its
``jupyter`` lists the server extension and the lab extension as enabled.

The venv lives outside the checkout, in ``<tmp>/workbench-wheel-venvs/<key>/`` (``<key>``: the
wheel's requirements, torch and Python), and is kept between test sessions: only the wheel is
reinstalled into it, so a first session pays for the dependencies (a few minutes) and later
ones do not. A change of the dependencies makes a new venv (the old one is removed), and
``WB_WHEEL_FRESH=1`` forces one.

The first tests, unmarked and fast, hold the lookup the installed package relies on: the
shipped analyses, a user's folders before them, and the name rules in every folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANALYSES = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
INSTALL_TIMEOUT_S = 1800
DEMO_TIMEOUT_S = 900


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def analyses(self) -> Path:
        """Where the installed package's shipped analyses are (site-packages/workbench/analyses)."""
        out = subprocess.run(
            [str(self.bin / "python"), "-c",
             "import workbench.runs as r; print(r.shipped_analyses_dir())"],
            env=clean_env(self), capture_output=True, text=True, check=True, cwd=self.venv,
        )
        return Path(out.stdout.strip())


def clean_env(installed: Installed | None = None) -> dict[str, str]:
    """This process's environment without anything pointing into the checkout or its venv:
    the installed venv's bin first on PATH; ``WORKBENCH_CACHE`` (the session's test cache) kept,
    so the organism builds are shared with the other tests."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "WORKBENCH_ANALYSES"}
           and not k.startswith("JUPYTER")}
    path = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not Path(p).resolve().is_relative_to(REPO)]
    if installed is not None:
        path.insert(0, str(installed.bin))
    env["PATH"] = os.pathsep.join(path)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def sh(args: list[str], *, timeout: float, cwd: Path, env: dict[str, str]
       ) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it exits non-zero."""
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {out.returncode}\n--- stdout\n{out.stdout[-6000:]}"
                    f"\n--- stderr\n{out.stderr[-6000:]}")
    return out


def build_wheel(out_dir: Path) -> Path:
    """The wheel of this checkout, built without build isolation when hatchling and
    hatch-jupyter-builder are installed here (the dev extra), else in pip's isolated env."""
    isolated = not all(importlib.util.find_spec(m) for m in ("hatchling", "hatch_jupyter_builder"))
    args = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out_dir)]
    if not isolated:
        args.append("--no-build-isolation")
    sh(args, timeout=INSTALL_TIMEOUT_S, cwd=out_dir, env=clean_env())
    (wheel,) = out_dir.glob("workbench-*.whl")
    return wheel


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    return sorted(line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("Requires-Dist:"))


def torch_requirement() -> str:
    """The torch this environment has (``make test``'s TORCH_SPEC: the CPU build here)."""
    import torch

    return f"torch=={torch.__version__}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Iterator[Installed]:
    base = Path(tempfile.gettempdir()) / "workbench-wheel-venvs"
    key = hashlib.sha256("\n".join(
        [sys.version, torch_requirement(), *requirements(wheel)]).encode()).hexdigest()[:16]
    venv = base / key
    inst = Installed(wheel, venv)
    env = clean_env()
    ready = venv / ".ready"
    if os.environ.get("WB_WHEEL_FRESH") == "1" or not ready.exists():
        if base.is_dir():  # one kept venv at a time (each holds a torch: GBs)
            for old in base.iterdir():
                shutil.rmtree(old, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        sh([base_python, "-m", "venv", str(venv)], timeout=300, cwd=venv.parent, env=env)
        pip = [str(inst.bin / "python"), "-m", "pip", "install", "-q"]
        sh([*pip, torch_requirement()], timeout=INSTALL_TIMEOUT_S, cwd=venv, env=env)
        sh([*pip, f"{wheel}[lab]"], timeout=INSTALL_TIMEOUT_S, cwd=venv, env=env)
        ready.touch()
    else:  # same requirements: only this checkout's wheel is new
        sh([str(inst.bin / "python"), "-m", "pip", "install", "-q", "--no-deps",
            "--force-reinstall", str(wheel)], timeout=600, cwd=venv, env=env)
    yield inst


def write_notebook(path: Path, title: str) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cell = new_code_cell("x = 1  # a parameter")
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}"), cell])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_a_checkout_ships_its_notebooks_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench import runs

    monkeypatch.delenv("WORKBENCH_ANALYSES", raising=False)
    assert runs.shipped_analyses_dir() == REPO / "notebooks"  # editable install: no copy
    assert runs.analyses_dirs() == [REPO / "notebooks"] == [runs.analyses_dir()]
    assert runs.available_notebooks() == [Path(n).stem for n in ANALYSES]
    assert runs.resolve_notebook("alignment_audit") == REPO / "notebooks" / "alignment_audit.ipynb"


def test_own_folders_come_first_and_keep_the_name_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench import runs

    first, second = tmp_path / "first", tmp_path / "second"
    mine = write_notebook(first / "mine.ipynb", "Mine")
    shadow = write_notebook(first / "alignment_audit.ipynb", "My own flagship")
    other = write_notebook(second / "other.ipynb", "Other")
    write_notebook(second / "mine.ipynb", "Shadowed")
    outside = write_notebook(tmp_path / "outside.ipynb", "Outside")
    (second / "escape.ipynb").symlink_to(outside)
    monkeypatch.setenv("WORKBENCH_ANALYSES", os.pathsep.join([str(first), str(second)]))
    shipped = REPO / "notebooks"
    assert runs.analyses_dirs() == [first.resolve(), second.resolve(), shipped]
    assert runs.analyses_dir() == first.resolve()
    names = runs.available_notebooks()
    assert names == ["alignment_audit", "mine", "escape", "other",
                     *(Path(n).stem for n in ANALYSES if n != "alignment_audit.ipynb")]
    assert runs.resolve_notebook("mine") == mine.resolve()  # the earlier folder wins
    assert runs.resolve_notebook("alignment_audit") == shadow.resolve()
    assert runs.resolve_notebook("other.ipynb") == other.resolve()
    assert runs.resolve_notebook("patch_transfer") == shipped / "patch_transfer.ipynb"
    for name in ("../outside", "../first/mine", "first/mine", "..", ".mine", "~mine",
                 str(outside), "nbs\\mine", "mine/../other"):
        with pytest.raises(ValueError, match=r"refused notebook name.*analyses folders"):
            runs.resolve_notebook(name)
    with pytest.raises(ValueError, match=r"resolves outside .*second"):
        runs.resolve_notebook("escape")  # a symlink out of its folder is refused, not skipped
    with pytest.raises(FileNotFoundError, match=r"no notebook 'missing.ipynb' in .*first.*"
                       r"available: alignment_audit, mine"):
        runs.resolve_notebook("missing")
    # a path is a path: anywhere, when it exists
    assert runs.resolve_notebook(outside) == outside.resolve()


def test_cli_analyses_option_adds_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench import cli

    monkeypatch.setenv("WORKBENCH_ANALYSES", "")  # restored after: main() sets it for real
    own = tmp_path / "own"
    write_notebook(own / "mine.ipynb", "Mine")
    assert cli.main(["--analyses", str(own), "analyses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["mine", str((own / "mine.ipynb").resolve())]
    assert len(lines) == 1 + len(ANALYSES) + 1
    assert os.environ["WORKBENCH_ANALYSES"] == str(own.resolve())  # kernels and workers see it
    assert cli.main(["--analyses", str(tmp_path / "nope"), "analyses"]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.wheel
def test_the_wheel_carries_the_analyses_and_both_extensions(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for nb in ANALYSES:
            assert z.read(f"workbench/analyses/{nb}") == (REPO / "notebooks" / nb).read_bytes()
    assert len(ANALYSES) >= 5 and "alignment_audit.ipynb" in ANALYSES
    assert not any(n.startswith("notebooks/") for n in names), "analyses belong in the package"
    data = "workbench-0.1.0.data/data/"
    assert f"{data}etc/jupyter/jupyter_server_config.d/workbench.json" in names
    assert f"{data}share/jupyter/labextensions/@workbench/extension/package.json" in names
    for bundle in ("feature_map", "neighborhood", "patch_preview"):
        assert f"workbench/widgets/static/{bundle}.js" in names
    reqs = requirements(wheel)
    assert any(r.startswith("jupyterlab") and "extra == 'lab'" in r for r in reqs), reqs
    assert any(r.startswith("jupyter-server") and "extra == 'lab'" in r for r in reqs), reqs


@pytest.mark.wheel
def test_installed_demo_runs_outside_the_checkout(installed: Installed, tmp_path: Path) -> None:
    shipped = installed.analyses
    assert shipped.parts[-3:] == ("site-packages", "workbench", "analyses")
    assert shipped.is_relative_to(installed.venv)
    assert sorted(p.name for p in shipped.glob("*.ipynb")) == ANALYSES
    env = clean_env(installed)
    work = tmp_path / "elsewhere"
    work.mkdir()
    t0 = time.perf_counter()
    out = sh([str(installed.bin / "workbench"), "demo", "--small"], timeout=DEMO_TIMEOUT_S,
             cwd=work, env=env)
    seconds = time.perf_counter() - t0
    assert f"running the flagship analysis, {shipped / 'alignment_audit.ipynb'}" in out.stdout
    report = re.search(r"^report: (.+)$", out.stdout, re.M)
    record = re.search(r"^record: (.+)$", out.stdout, re.M)
    assert report and record, out.stdout
    report_path, record_path = Path(report.group(1)), Path(record.group(1))
    run_dir = report_path.parent
    assert run_dir.parent == work / "runs"
    for name in ("notebook.ipynb", "report.html", "record.json", "parameters.json",
                 "status.json", "log.txt"):
        assert (run_dir / name).is_file(), name
    assert record_path == run_dir / "record.json"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "complete"
    assert status["notebook"] == str(shipped / "alignment_audit.ipynb")
    assert status["parameters"]["organism"] == "small"
    assert f"alignment_audit — run {run_dir.name}" in report_path.read_text(encoding="utf-8")
    assert json.loads(record_path.read_text())["subject"]
    verified = sh([str(installed.bin / "workbench"), "record", "verify", str(record_path)],
                  timeout=300, cwd=work, env=env)
    assert verified.stdout.startswith("record verified: all "), verified.stdout
    # ipykernel's plain-TCP warning no longer lands between the progress bars
    assert "without encryption" not in out.stdout + out.stderr
    assert "alignment_audit" in out.stderr  # the run's progress bar is still there
    print(f"workbench demo --small in the installed venv: {seconds:.0f} s")


@pytest.mark.wheel
def test_installed_cli_lists_shipped_and_own_analyses(installed: Installed,
                                                      tmp_path: Path) -> None:
    env = clean_env(installed)
    shipped = installed.analyses
    listed = sh([str(installed.bin / "workbench"), "analyses"], timeout=120, cwd=tmp_path,
                env=env).stdout
    for nb in ANALYSES:
        assert f"{shipped / nb}" in listed
    own = tmp_path / "mine"
    own.mkdir()
    shutil.copy(REPO / "notebooks" / "alignment_audit.ipynb", own / "my_audit.ipynb")
    listed = sh([str(installed.bin / "workbench"), "--analyses", str(own), "analyses"],
                timeout=120, cwd=tmp_path, env=env).stdout
    lines = listed.splitlines()
    assert lines[0].split() == ["my_audit", str(own / "my_audit.ipynb")]  # own folder first
    assert all(f"{shipped / nb}" in listed for nb in ANALYSES)
    # the server extension's default analyses folder is the shipped one
    server = sh([str(installed.bin / "python"), "-c",
                 "from workbench.server import WorkbenchServer; "
                 "print(WorkbenchServer().analyses_path)"],
                timeout=120, cwd=tmp_path, env=env).stdout.strip()
    assert Path(server) == shipped


@pytest.mark.wheel
def test_installed_lab_and_server_extensions_are_enabled(installed: Installed,
                                                         tmp_path: Path) -> None:
    env = clean_env(installed)
    jupyter = str(installed.bin / "jupyter")
    server = sh([jupyter, "server", "extension", "list"], timeout=300, cwd=tmp_path, env=env)
    text = ANSI.sub("", server.stdout + server.stderr)
    block = section(text, f"Config dir: {installed.venv / 'etc' / 'jupyter'}")
    assert re.search(r"^\s+workbench\.server enabled$", block, re.M), text
    assert re.search(r"^\s+workbench\.server\s+OK$", block, re.M), text
    lab = sh([jupyter, "labextension", "list"], timeout=300, cwd=tmp_path, env=env)
    text = ANSI.sub("", lab.stdout + lab.stderr)
    block = section(text, str(installed.venv / "share" / "jupyter" / "labextensions"))
    assert re.search(r"^\s+@workbench/extension v\S+ enabled OK", block, re.M), text


def section(text: str, header: str) -> str:
    """The lines under the line ``header`` of a ``jupyter ... list`` output, up to the next
    folder's header (``Config dir: ...`` or a path)."""
    lines = text.splitlines()
    assert header in lines, f"no {header!r} in:\n{text}"
    out = []
    for line in lines[lines.index(header) + 1:]:
        if line.startswith(("Config dir:", "/")):
            break
        out.append(line)
    return "\n".join(out)
