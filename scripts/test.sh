#!/usr/bin/env bash
# Set up (venv, packages, Chromium) and run the whole test suite. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --browser
. .venv/bin/activate
python -m pytest -q -ra "$@"
