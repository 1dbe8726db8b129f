#!/usr/bin/env bash
# Set up and run the main job on the embedded default: the bundled 80-image ImageNet sample
# through SqueezeNet 1.1 (real Caffe weights shipped by `ndf`), then export the class graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. .venv/bin/activate
summit aggregate --out runs/sample --overwrite "$@"
summit info --run runs/sample
summit export --run runs/sample --all --format json --out-dir runs/sample/graphs
summit export --run runs/sample --all --format summit --out-dir runs/sample/ag
summit export --run runs/sample --embedding
echo "explore it: .venv/bin/summit serve --run runs/sample   (http://127.0.0.1:5000)"
