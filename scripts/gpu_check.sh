#!/usr/bin/env bash
# The GPU check (issue 29; docs/benchmark.md "GPU check"):
#   scripts/gpu_check.sh [--device cuda|cpu] [--smoke] --out DIR [--wheels DIR]
# Installs ssl-siam where the machine lacks it — into .venv, from the wheels in --wheels (default: wheels/, made
# beforehand with `pip wheel -w wheels .` where the registries can be reached; the GPU machine has no internet) —
# then runs scripts/gpu_check.py: bench of every objective and finetuning, a few real steps of every training and
# of predict --tta (bf16, channels_last), once compiled, once under torchrun with SyncBatchNorm; JSON under DIR.
# Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=wheels
args=()
while (($#)); do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
if ! "$python" -c "import ssl_siam, torch, timm, lightly" 2>/dev/null; then
  if [[ ! -d "$wheels" ]]; then
    echo "gpu_check: ssl_siam is not installed and $wheels/ holds no wheels (make them with: pip wheel -w $wheels .)" >&2
    exit 2
  fi
  [[ -x .venv/bin/python ]] || python3 -m venv --system-site-packages .venv
  python=.venv/bin/python
  "$python" -m pip install --no-index --find-links "$wheels" ssl-siam
fi
exec "$python" scripts/gpu_check.py "${args[@]}"
