#!/usr/bin/env bash
# Summit's reference run: ImageNet train (1.28M images, ImageFolder layout with the 1000 wnid
# folders) through torchvision's GoogLeNet/InceptionV1 (weights downloaded once by torchvision),
# on all local GPUs (nccl) or CPU cores (gloo). Resumable: rerun the same command after a crash.
#   usage: pipelines/imagenet_googlenet.sh /data/imagenet/train runs/imagenet-googlenet [NPROC]
set -euo pipefail
DATA=${1:?ImageNet train directory}
OUT=${2:-runs/imagenet-googlenet}
NPROC=${3:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
RESUME=""; ls "$OUT"/checkpoint-*of*.npz >/dev/null 2>&1 && RESUME=--resume
torchrun --standalone --nproc-per-node "$NPROC" -m summit aggregate "$DATA" --out "$OUT" \
  --model googlenet --weights torchvision -k 5 --k-influence 5 --batch-size 64 --workers 8 \
  --checkpoint-every 20000 $RESUME
summit export --run "$OUT" --embedding
summit export --run "$OUT" --all --format json --out-dir "$OUT/graphs"
