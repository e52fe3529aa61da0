#!/usr/bin/env bash
# The GPU check (issue 29; docs/benchmark.md "GPU check"):
#   scripts/gpu_check.sh [--device cuda|cpu] [--smoke] --out DIR [--wheels DIR]
# Runs from the source tree (on PYTHONPATH). Third-party packages the machine lacks travel as wheels (--wheels,
# default .whl/, made beforehand where pip works; the GPU machine has no internet) and are installed with
# --no-index into a temporary site folder. Then scripts/gpu_check.py: bench of every objective and finetuning, a
# few real steps of every training and of predict --tta (bf16, channels_last), once compiled, once under torchrun
# with SyncBatchNorm; JSON under DIR. Exits 1 if a step fails, 2 if the packages cannot be found.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=.whl
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
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# every distribution pyproject.toml depends on (subcommands import theirs lazily), then the CLI itself
needed='import importlib.metadata as md, re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
def present(name):
    try:
        return bool(md.version(name))
    except md.PackageNotFoundError:
        return False
missing = [n for n in (re.match(r"[A-Za-z0-9_.-]+", d).group() for d in deps) if not present(n)]
if missing:
    sys.exit("missing " + ", ".join(missing))
import ssl_siam.cli'
if ! "$python" -c "$needed" 2>/dev/null && compgen -G "$wheels/*.whl" > /dev/null; then
  site=$(mktemp -d /tmp/gpu_check_site.XXXX)
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$PYTHONPATH:$site"
fi
if ! missing=$("$python" -c "$needed" 2>&1); then
  echo "gpu_check: $(tail -n 1 <<< "$missing"); carry the missing packages as wheels in $wheels/ (docs/benchmark.md)" >&2
  exit 2
fi
exec "$python" scripts/gpu_check.py "${args[@]}"
