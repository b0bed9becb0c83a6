#!/usr/bin/env bash
# The issues' GPU checks in one script, for a machine with CUDA and the package installed:
#   1. geometry.neighbors at 24,576 x 768 and 65,536 x 2,304 on CUDA (benchmarks/geometry.py)
#   2. the organism built on CUDA and the toy-EM benchmark on CUDA (benchmarks/organism_em.py)
#   3. the alignment chain on CUDA (benchmarks/alignment.py), then the forecast family
#      (benchmarks/forecast.py: 49 fine-tunes forecast and judged, screening; about 11 min per
#      seed on this project's 2-core CPU machine)
#   4. the flagship notebook as a run on CUDA (`workbench run alignment_audit -p device cuda`),
#      then the same run on the CPU of the same machine, for the CPU-vs-GPU time
# Each step gets what is left of a deadline (default 540 s), so the script ends in time and
# prints what it measured so far. Logs go to $LOGS (default ./gpu-logs).
#
# Usage: bash benchmarks/gpu_check.sh [SEED]   (env: PY=python3 DEADLINE=540 LOGS=dir
#        SKIP="geometry organism_em alignment forecast notebook_cuda notebook_cpu", any of them)
# With the package installed by `pip install --target DIR` (no venv), point JUPYTER_PATH at
# DIR/share/jupyter, or nbconvert finds no `lab` template and the runs publish no report.html.
set -u -o pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-python3}"
SEED="${1:-0}"
DEADLINE="${DEADLINE:-540}"
LOGS="${LOGS:-$PWD/gpu-logs}"
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 WORKBENCH_CACHE="${WORKBENCH_CACHE:-/tmp/wb-cache}"

left() { echo $((DEADLINE - SECONDS)); }

step() {  # step NAME CMD...: run CMD with the time left, log to $LOGS/NAME.log, print its time
  local name="$1"; shift
  case " ${SKIP:-} " in *" $name "*) echo "== $name: skipped (SKIP)"; return 0;; esac
  local budget; budget=$(left)
  if [ "$budget" -lt 15 ]; then echo "== $name: skipped (deadline)"; return 0; fi
  echo "== $name (up to ${budget} s): $*"
  local t0=$SECONDS
  # run from /tmp so `python -m` imports the installed package, not the checkout's sources
  (cd /tmp && timeout "$budget" "$@") >"$LOGS/$name.log" 2>&1
  local rc=$?
  echo "-- $name: rc $rc, $((SECONDS - t0)) s wall"
  grep -v -E "it/s|s/it|^\s*$" "$LOGS/$name.log" | tail -n "${TAIL:-40}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'EOF'
import torch, transformer_lens, sae_lens, papermill, workbench
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("transformer_lens", transformer_lens.__version__ if hasattr(transformer_lens, "__version__") else "?",
      "sae_lens", sae_lens.__version__, "workbench from", workbench.__file__)
EOF

step geometry "$PY" "$REPO/benchmarks/geometry.py" --device cuda
step organism_em "$PY" "$REPO/benchmarks/organism_em.py" --seeds "$SEED" --device cuda
step alignment "$PY" "$REPO/benchmarks/alignment.py" --seeds "$SEED" --device cuda
step forecast "$PY" "$REPO/benchmarks/forecast.py" --seeds "$SEED" --device cuda \
  --json "$LOGS/forecast.json"
step notebook_cuda "$PY" -m workbench run "$REPO/notebooks/alignment_audit.ipynb" \
  -p seed "$SEED" -p device cuda --runs-root "$LOGS/runs" --no-progress
step notebook_cpu "$PY" -m workbench run "$REPO/notebooks/alignment_audit.ipynb" \
  -p seed "$SEED" -p device cpu --runs-root "$LOGS/runs" --no-progress
(cd /tmp && "$PY" -m workbench runs list --runs-root "$LOGS/runs") 2>&1 | tail -n 5 || true
echo "== total ${SECONDS} s"
