"""``python -m workbench.runs._child``: a runner process of a local sweep.

Reads one JSON spec per line on stdin (notebook path, parameters, run id, runs root, kernel,
timeout, retries, force, result path), runs each with :func:`workbench.runs.run_prepared` (no
progress bar; each run starts its own kernel) and writes the run's
:class:`~workbench.runs.RunInfo` as JSON to that spec's result path; exits at the end of stdin.
A runner process serves one sweep worker, run after run, so imports are paid once per worker;
when it dies mid-run the sweep publishes that run as failed and starts a fresh runner. An
error of the runner itself (not of the notebook) is written as ``{"runner_error": traceback}``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def serve_one(spec: dict) -> None:
    from workbench.runs._run import run_spec

    out = run_spec(spec)
    result = Path(spec["result"])
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_text(json.dumps(out), encoding="utf-8")
    tmp.replace(result)


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        try:
            serve_one(spec)
        except Exception:  # the runner's own error: reported for this run, the next one goes on
            text = traceback.format_exc()
            print(text, file=sys.stderr, flush=True)
            Path(spec["result"]).write_text(json.dumps({"runner_error": text}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
