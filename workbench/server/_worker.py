"""``python -m workbench.server._worker SPEC_JSON``: one run launched by the server extension.

``SPEC_JSON`` holds ``notebook`` (an absolute path the server already resolved inside its
analyses folder), ``parameters`` (already validated and coerced), ``run_id``, ``runs_root`` and
``kernel``. The run is :func:`workbench.runs.run_prepared` without a progress bar; the process
prints the run's ``status.json`` and exits 0 when it completed, 1 when it failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.runs import prepare, run_prepared

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m workbench.server._worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    prep = prepare(Path(spec["notebook"]), spec["parameters"], run_id=spec["run_id"])
    info = run_prepared(prep, runs_root=spec["runs_root"], kernel=spec.get("kernel", "python3"),
                        progress=False)
    print(json.dumps(info.to_dict(), sort_keys=True), flush=True)
    return 0 if info.ok else 1


if __name__ == "__main__":
    sys.exit(main())
