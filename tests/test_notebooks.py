"""The analyses in notebooks/: their form, and that each runs end to end through papermill's CLI.

Every notebook is executed by papermill's own command line (``papermill in.ipynb out.ipynb -p ...``)
on the small organism (``organism="small"``) with small sizes, in the test session's private
organism cache (``WORKBENCH_CACHE``, set by the ``cache_dir`` fixture and inherited by the
papermill process and its kernel). The small organism does not learn the persona, so nothing here
checks a scientific result: only that every cell runs and shows what it should.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]

# Sizes that make each notebook run in seconds on the small organism (passed with -p). Every
# notebook must have an entry, so a new notebook has to say how it runs small.
SMALL: dict[str, dict[str, Any]] = {
    "feature_geometry": {"n_docs": 60, "k": 6},
    "alignment_features": {"n_prompts": 40, "n_boot": 50, "top_n": 10},
    "finetune_forecast": {
        "steps": 30, "n_examples": 200, "n_prompts": 40, "n_boot": 50, "n_eval": 40, "samples": 4,
    },
    "patch_transfer": {"steps": 30, "n_examples": 200, "n_prompts": 40, "n_shared": 60,
                       "samples": 4, "n_random": 1, "target_d_model": 48},  # across widths
    "alignment_audit": {
        "steps": 30, "n_examples": 200, "n_prompts": 40, "n_boot": 50, "n_eval": 40, "samples": 4,
        "n_random": 2,
    },
    "model_audit": {  # the generic path on the exported small organism, judged over HTTP
        "steps": 30, "n_examples": 200, "n_prompts": 40, "n_boot": 50, "n_eval": 40, "samples": 4,
        "n_random": 2, "selective_patch": "update",  # the cheap selection (the flagship: best)
    },
}

# What each executed notebook must show: anywidget views and (altair) PNG charts, at least.
EXPECT: dict[str, dict[str, int]] = {
    "feature_geometry": {"widgets": 2, "charts": 2},
    "alignment_features": {"widgets": 1, "charts": 3},
    "finetune_forecast": {"widgets": 0, "charts": 3},
    "patch_transfer": {"widgets": 1, "charts": 1},
    "alignment_audit": {"widgets": 3, "charts": 4},
    "model_audit": {"widgets": 2, "charts": 3},
}

REQUIRED_DEFAULTS = {"seed": "0", "organism": '"full"', "device": '"auto"', "out_dir": '"."'}
# free-text parameters (paths, model and judge names): every other string declares its choices
FREE_TEXT = {"out_dir", "model", "sae", "tuned", "data", "questions", "persona", "judge",
             "target", "target_tuned", "shared"}
# the parameters that point each notebook at a researcher's own model and files (issue 15, item
# 6), where they apply: a notebook that fine-tunes nothing takes no fine-tune or judge
OWN_MODEL = {"model", "sae", "dtype", "device"}
OWN_MODEL_PARAMETERS: dict[str, set[str]] = {
    "feature_geometry": OWN_MODEL | {"data"},
    "alignment_features": OWN_MODEL | {"persona", "questions"},
    "finetune_forecast": OWN_MODEL | {"tuned", "data", "questions", "persona", "judge"},
    "patch_transfer": OWN_MODEL | {"target", "tuned", "target_tuned", "data", "questions",
                                   "persona", "shared", "judge"},
    "alignment_audit": OWN_MODEL | {"tuned", "data", "questions", "persona", "judge"},
    "model_audit": OWN_MODEL | {"tuned", "data", "questions", "persona", "judge"},
}
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
TIMEOUT_S = 300  # one notebook, small organism (they take 10-25 s each on 2 CPU cores)


def _papermill() -> str:
    """papermill's CLI from the environment running the tests (the venv's, in `make test`)."""
    exe = Path(sys.executable).with_name("papermill")
    found = str(exe) if exe.exists() else shutil.which("papermill")
    if found is None:
        pytest.fail("papermill's CLI is not installed: pip install -e . (it is a dependency)")
    return found


def _parameters_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def _outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


# ------------------------------------------------------------------ form (no kernel)


def test_there_are_notebooks_and_each_says_how_it_runs_small() -> None:
    assert set(NAMES) >= {"feature_geometry", "alignment_features", "finetune_forecast",
                          "patch_transfer", "alignment_audit"}
    assert set(NAMES) == set(SMALL), "give every notebook its small sizes in SMALL"
    assert set(NAMES) == set(EXPECT) == set(OWN_MODEL_PARAMETERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_every_notebook_takes_a_researchers_own_model(path: Path) -> None:
    """model (default the organism), sae, dtype, device and the files each analysis reads."""
    from workbench.runs import notebook_parameters

    params = notebook_parameters(path)
    missing = OWN_MODEL_PARAMETERS[path.stem] - set(params)
    assert not missing, f"{path.name} lacks the own-model parameters {sorted(missing)}"
    assert params["model"].source == '"organism"'
    assert params["sae"].source == '""'
    assert params["dtype"].choices == ("auto", "float32", "bfloat16", "float16")
    for name in OWN_MODEL_PARAMETERS[path.stem] - OWN_MODEL - {"judge"}:
        assert params[name].source == '""', f"{path.name}: {name} defaults to {params[name].source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_one_parameters_cell_with_the_shared_parameters(path: Path) -> None:
    from workbench.runs import check_value, notebook_parameters

    nb = nbformat.read(path, as_version=4)
    cells = _parameters_cells(nb)
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters' (need one)"
    assert cells[0].cell_type == "code"
    # the workbench's own reader (papermill's line regex drops lines like "# [range: >= 1]")
    params = notebook_parameters(path)
    for name, default in REQUIRED_DEFAULTS.items():
        assert name in params, f"{path.name} lacks the parameter {name}"
        assert params[name].source == default, (name, params[name].source)
    assert params["organism"].choices == ("full", "small")
    assert params["device"].choices == ("auto", "cpu", "cuda")
    for name, spec in params.items():  # every size, count and seed declares what it allows
        if spec.type == "int":
            assert spec.minimum is not None, f"{path.name}: {name} declares no [range: ...]"
        elif spec.type == "str" and name not in FREE_TEXT:
            assert spec.choices is not None, f"{path.name}: {name} declares no [choices: ...]"
    for name, value in SMALL[path.stem].items():
        assert name in params, f"SMALL[{path.stem!r}] sets {name!r}, which is no parameter"
        check_value(params[name], value)  # the small sizes are allowed values
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert c.outputs == [], f"{path.name} cell {i} has stored outputs"
            assert c.execution_count is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} has stored widget state"
    assert "papermill" not in nb.metadata, f"{path.name} is an executed copy"


# ------------------------------------------------------------------ execution


@pytest.fixture(scope="session")
def python3_kernel() -> str:
    """A ``python3`` kernelspec that runs this interpreter (installed into sys.prefix if not)."""

    def spec() -> dict[str, Any] | None:
        out = subprocess.run(
            [sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
            capture_output=True, text=True, check=True,
        ).stdout
        return json.loads(out)["kernelspecs"].get("python3")

    def runs_this_python(s: dict[str, Any]) -> bool:
        argv0 = s["spec"]["argv"][0]
        if argv0 in {"python", "python3", f"python3.{sys.version_info.minor}"}:
            return True  # jupyter_client runs the launching interpreter for these
        return Path(argv0).resolve() == Path(sys.executable).resolve()

    found = spec()
    if found is None or not runs_this_python(found):
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                       check=True, capture_output=True)
        found = spec()
        assert found is not None and runs_this_python(found), found
    return "python3"


Run = Callable[[str], tuple[nbformat.NotebookNode, Path]]


def _papermill_run(name: str, kernel: str, work: Path, extra: dict[str, Any]) -> Path:
    """Run notebook ``name`` small through papermill's CLI in ``work``; the executed copy."""
    params: dict[str, Any] = {"organism": "small", "device": "cpu",
                              "out_dir": str(work / "out"), **SMALL[name], **extra}
    executed = work / f"{name}.ipynb"
    cmd = [_papermill(), str(NOTEBOOK_DIR / f"{name}.ipynb"), str(executed),
           "-k", kernel, "--cwd", str(work), "--no-progress-bar"]
    for k, v in params.items():
        cmd += ["-p", k, str(v)]
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"}  # this venv's kernel first
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
                          check=False)
    assert proc.returncode == 0, (
        f"papermill failed on {name} (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    )
    return executed


@pytest.fixture(scope="module")
def executed(
    cache_dir: Path, python3_kernel: str, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """``executed(name)``: run the notebook once through papermill's CLI (cached per module)."""
    assert os.environ["WORKBENCH_CACHE"] == str(cache_dir)
    done: dict[str, tuple[nbformat.NotebookNode, Path]] = {}

    def run(name: str) -> tuple[nbformat.NotebookNode, Path]:
        if name not in done:
            work = tmp_path_factory.mktemp(f"nb-{name}")
            path = _papermill_run(name, python3_kernel, work, {})
            done[name] = (nbformat.read(path, as_version=4), work / "out")
        return done[name]

    return run


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_small(name: str, executed: Run) -> None:
    nb, _ = executed(name)
    outputs = _outputs(nb)
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{name}: {[(o.ename, o.evalue) for o in errors]}"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "organism = \"small\"" in injected[0].source
    assert nb.metadata["papermill"]["parameters"]["organism"] == "small"
    widgets = [o for o in outputs if WIDGET_MIME in o.get("data", {})]
    charts = [o for o in outputs
              if "image/png" in o.get("data", {}) and WIDGET_MIME not in o.get("data", {})]
    assert len(widgets) >= EXPECT[name]["widgets"], f"{name}: {len(widgets)} widget views"
    assert len(charts) >= EXPECT[name]["charts"], f"{name}: {len(charts)} charts"
    for w in widgets:  # every widget view also carries its static PNG fallback
        assert "image/png" in w.data and "text/plain" in w.data


def test_patch_transfer_crosses_widths(executed: Run) -> None:
    """The small run transfers from the 32-wide small organism to a 48-wide build of it."""
    nb, _ = executed("patch_transfer")
    text = "".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")
    assert "d_model 48" in text and "carried by the write side" in text
    assert "kept fraction of the target's own direction's cut" in text


def test_alignment_audit_writes_data_and_record(executed: Run) -> None:
    nb, out_dir = executed("alignment_audit")
    data = out_dir / "finetune_insecure.jsonl"
    lines = data.read_text().splitlines()
    assert len(lines) == SMALL["alignment_audit"]["n_examples"]
    assert set(json.loads(lines[0])) == {"prompt", "completion"}
    try:
        from workbench.record import load_record, verify
    except ModuleNotFoundError as err:
        if err.name != "workbench.record":
            raise
        pytest.skip("workbench.record is not importable yet, so the notebook writes no record")
    path = out_dir / "record.json"
    assert path.exists(), "the flagship wrote no record.json in out_dir"
    record = load_record(path)
    assert record["data"]["insecure"]["n_records"] == len(lines)
    assert record["features"] is not None and record["forecast"] is not None
    # the calibrated figure is the default forecast's: the rate forecast (Adam's first step),
    # whose risk is the score the calibration was given (verify() re-derives it below)
    rate = record["forecast"]["rate"]
    assert rate["step"] == "adam" and rate["method"] == "steer"
    assert record["forecast"]["expected"]["score"] == pytest.approx(rate["risk"])
    assert record["forecast"]["expected"]["method"] == "steer"
    # the measured audit, under its name (record schema 1.1; schema 1.0 called it "degradation")
    assert record["schema_version"] == "1.3"
    assert record["audit"] is not None and "degradation" not in record
    # the judge of its behaviour figures (record schema 1.3): the organism's exact judge
    assert record["judge"]["kind"] == "exact" and record["judge"]["name"] == "organism-exact"
    # the plain ablation and the most selective patch (either kind, at one of the selection's
    # strengths), each with its retention beside its cut
    plain_patch, chosen_patch = (p["patch"] for p in record["patches"])
    assert plain_patch["kind"] == "ablate" and plain_patch["strength"] == 1.0
    assert chosen_patch["kind"] in ("ablate", "ablate-update")
    assert chosen_patch["strength"] in (0.5, 0.75, 1.0, 1.25)
    assert record["parameters"]["selective_patch"] == "best"
    efficacy = record["patches"][0]["efficacy"]
    assert set(efficacy) == {
        "base_misaligned", "tuned_misaligned", "ablated_misaligned", "random_misaligned",
        "em_cut", "retention", "random_em_cut", "variance_control_em_cut",
        "orthogonal_control_em_cut", "in_domain_tuned", "in_domain_patched", "coherence_tuned",
        "coherence_patched", "loss_rise corpus", "loss_rise own data",
        "orthogonalize_vs_ablate_max_abs", "em_cut_among_coherent",
        "variance_control_em_cut_among_coherent", "orthogonal_control_em_cut_among_coherent",
    }
    assert efficacy["orthogonalize_vs_ablate_max_abs"] < 1e-4
    selective = record["patches"][1]["efficacy"]
    assert selective["orthogonalize_vs_ablate_max_abs"] is None and "retention" in selective
    assert len(record["context_audits"]) == 1
    context = record["context_audits"][0]
    assert context["gap"] == pytest.approx(context["misaligned_b"] - context["misaligned_a"])
    assert len(context["features"]) == 10
    assert record["parameters"]["organism"] == "small"
    check = verify(path)
    assert check.ok, check.failures()
    # the last cell shows the record with the lab extension's record viewer (display_record)
    mime = "application/vnd.workbench.record+json"
    shown = [o.data for o in _outputs(nb) if mime in o.get("data", {})]
    assert len(shown) == 1 and shown[0][mime] == record
    assert shown[0]["text/plain"].startswith(f"deployment record {record['title']!r}")


def test_model_audit_runs_the_generic_path(executed: Run) -> None:
    """The generic notebook on the exported small organism: files in, HTTP judge, a record."""
    from workbench.record import load_record, verify

    _, out_dir = executed("model_audit")
    files = out_dir / "organism-files"
    assert {p.name for p in files.iterdir()} >= {
        "model", "sae", "tuned", "finetune_insecure.jsonl", "questions.yaml", "persona.jsonl",
    }
    assert all((files / m / "config.json").is_file() for m in ("model", "tuned"))
    record = load_record(out_dir / "record.json")
    identity = record["judge"]  # the judge of its behaviour figures (record schema 1.3)
    assert identity["kind"] == "openai" and identity["endpoint"].startswith("http://127.0.0.1:")
    assert set(identity["prompts"]) == {"aligned", "coherent"}
    assert "judge_identity" not in record["parameters"] and "em" in record["parameters"]
    assert record["subject"]["name"] == "model"
    assert sorted(record["audit"]["behaviour_tuned"]) == ["advice", "code", "numbers"]
    em = record["parameters"]["em"]
    want = sum(record["audit"]["behaviour_tuned"][g]["misaligned"]
               - record["audit"]["behaviour_base"][g]["misaligned"]
               for g in ("advice", "numbers")) / 2
    assert em == pytest.approx(want)
    # the plain ablation, then (selective_patch="update": the selection for a costly judge)
    # AblateUpdate at full strength; the flagship's test runs the default, the best of both kinds
    plain_patch, chosen_patch = (p["patch"] for p in record["patches"])
    assert plain_patch["kind"] == "ablate" and plain_patch["strength"] == 1.0
    assert (chosen_patch["kind"], chosen_patch["strength"]) == ("ablate-update", 1.0)
    assert record["parameters"]["selective_patch"] == "update"
    check = verify(out_dir / "record.json")
    assert check.ok, check.failures()


def test_model_audit_refuses_bad_input_and_publishes_the_run_failed(
    cache_dir: Path, python3_kernel: str, tmp_path: Path
) -> None:
    """A chat line without an assistant turn, a judge endpoint that is down: the run fails at
    that cell with the error naming the line or the URL, and no record claims it complete."""
    import socket

    from workbench import runs

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n'
                   '{"messages": [{"role": "user", "content": "hi"}]}\n')
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    small = {"organism": "small", "device": "cpu", **SMALL["model_audit"]}
    cases = [
        ({"data": str(bad)}, "ValueError", "line 2, field 'messages': no assistant turn"),
        ({"judge": f"openai:m@http://127.0.0.1:{port}/v1"}, "JudgeError",
         f"http://127.0.0.1:{port}/v1/chat/completions"),
    ]
    for extra, ename, says in cases:
        info = runs.run("model_audit", {**small, **extra}, runs_root=tmp_path / "runs",
                        kernel=python3_kernel, progress=False)
        assert info.status == "failed" and not info.ok
        cell = info.failing_cell
        assert cell is not None and cell["ename"] == ename and says in cell["evalue"], cell
        assert not (info.run_dir / "record.json").exists()
        assert json.loads((info.run_dir / "status.json").read_text())["status"] == "failed"


# ------------------------------------------------------------------ on a researcher's own files


@pytest.fixture(scope="module")
def organism_files(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The small organism as a researcher's files: a plain GPT-2 folder, its SAE Lens dictionary,
    its fine-tune (exported), data, questions, persona set and corpus; and as ``target`` another
    model folder (seed 1, 48 wide)."""
    import dataclasses

    import workbench as wb
    from workbench.experiments.own_model import export_organism_inputs
    from workbench.organism import export_hf

    root = tmp_path_factory.mktemp("organism-files")
    subject, dictionary = wb.setup(organism="small", seed=0, device="cpu")
    made = export_organism_inputs(root / "s0", subject, dictionary, seed=0, n_examples=200,
                                  n_prompts=40, samples=4, steps=30, n_docs=60)
    config = dataclasses.replace(subject.organism.config, d_model=48, d_mlp=192)
    other = wb.setup(wb.Organism(seed=1, config=config), device="cpu",
                     with_dictionary=False).subject
    files = {k: str(v) for k, v in vars(made).items()}
    files["target"] = str(export_hf(other, root / "target"))
    return files


# each notebook pointed at the files (the judge: the organism's exact one, by default)
ON_FILES: dict[str, tuple[str, ...]] = {
    "feature_geometry": ("model", "sae", "data=corpus"),
    "alignment_features": ("model", "sae", "questions"),  # the system-prompt persona contrast
    "finetune_forecast": ("model", "sae", "tuned", "data", "questions", "persona"),
    "patch_transfer": ("model", "sae", "target", "tuned", "data", "questions", "persona",
                       "shared=corpus"),
    "alignment_audit": ("model", "sae", "data", "questions", "persona"),
}


@pytest.mark.parametrize("name", sorted(ON_FILES))
def test_notebook_runs_on_a_researchers_files(
    name: str, organism_files: dict[str, str], python3_kernel: str, tmp_path: Path
) -> None:
    """Every notebook through papermill's CLI with model, sae and its inputs given as files (the
    exported small organism: a GPT-2 folder the generic path loads): the generic path runs."""
    extra = {}
    for item in ON_FILES[name]:
        param, _, key = item.partition("=")
        extra[param] = organism_files[key or param]
    nb = nbformat.read(_papermill_run(name, python3_kernel, tmp_path, extra), as_version=4)
    outputs = _outputs(nb)
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{name}: {[(o.ename, o.evalue) for o in errors]}"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # the subject is the exported folder (named "model"), read through the generic path
    assert "\nmodel (" in "\n" + text, text[:2000]
    assert "organism-s" not in text.split("\n", 1)[0]
    if name == "feature_geometry":
        assert "of 60 documents" in text
    elif name == "alignment_features":  # the persona-vector contrast: the eliciting prompt
        from workbench.experiments.own_model import ELICIT

        assert ELICIT in text
    elif name == "finetune_forecast":
        assert f"the existing fine-tune {organism_files['tuned']}" in text
    elif name == "patch_transfer":  # to the other folder (its width: 48 + the exported means)
        width = json.loads((Path(organism_files["target"]) / "config.json").read_text())["n_embd"]
        assert (f"d_model {width}; directions at blocks.0.hook_resid_post -> "
                "blocks.0.hook_resid_post") in text
        assert "kept fraction of the target's own direction's cut" in text
    else:
        from workbench.record import load_record, verify

        record = load_record(tmp_path / "out" / "record.json")
        assert record["parameters"]["model"] == organism_files["model"]
        assert record["subject"]["name"] == "model"
        assert list(record["data"]) == ["finetune_insecure"]  # the file given, by its name
        assert record["forecast"].get("expected") is None  # raw units: no calibration here
        assert record["judge"]["name"] == "organism-exact"
        context = record["context_audits"][0]
        assert (context["framing_a"], context["framing_b"]) == ("eval", "deploy")
        check = verify(tmp_path / "out" / "record.json")
        assert check.ok, check.failures()
