#!/usr/bin/env bash
# The same run split for a batch scheduler: one job per shard (e.g. a Slurm array with
# SLURM_ARRAY_TASK_ID=0..N-1), then one merge job. Shards merge to exactly the one-process result.
#   shard job:  pipelines/imagenet_googlenet_shards.sh shard /data/imagenet/train runs/inc 16 $SLURM_ARRAY_TASK_ID
#   merge job:  pipelines/imagenet_googlenet_shards.sh merge /data/imagenet/train runs/inc 16
set -euo pipefail
STEP=${1:?shard|merge}; DATA=${2:?data}; OUT=${3:?out}; N=${4:?number of shards}
case "$STEP" in
  shard)
    I=${5:?shard index}
    RESUME=""; ls "$OUT/shard-$I"/checkpoint-*.npz >/dev/null 2>&1 && RESUME=--resume
    summit aggregate "$DATA" --out "$OUT/shard-$I" --shard "$I/$N" --model googlenet \
      --weights torchvision --batch-size 64 --workers 8 --checkpoint-every 20000 $RESUME ;;
  merge)
    summit merge $(for i in $(seq 0 $((N - 1))); do echo "$OUT/shard-$i"; done) --out "$OUT/merged" ;;
  *) echo "first argument: shard or merge" >&2; exit 2 ;;
esac
