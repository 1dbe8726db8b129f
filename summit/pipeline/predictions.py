"""Per-image predictions: for every image of the pass, its run class and the model's top-5
outputs with their softmax probabilities (``predictions.parquet``, docs/SCHEMA.md).

Rows are preallocated for the whole dataset (n x (4 + 5 x 8) bytes: 56 MB for ImageNet's 1.28M
training images), so memory is flat; a shard or torchrun rank fills its own rows and merging
takes each row from the state that saw it. Probabilities are the float32 softmax of the batch's
logits: batches are identical in every run mode, so resumed, sharded and torchrun runs give the
same bits.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import torch

from ..errors import SummitError

TOP = 5  # model outputs kept per image
PREDICTIONS_SCHEMA = pa.schema([("image", pa.int64()), ("path", pa.string()), ("class", pa.int32()),
                                ("top", pa.list_(pa.int32())), ("top_prob", pa.list_(pa.float32())),
                                ("correct", pa.bool_())])


class PredictionsAccumulator:
    """label[i] (run class, -1: not seen), top[i] (model output indices, best first) and
    prob[i] (their softmax probabilities) of every dataset index i."""

    def __init__(self, n: int, n_outputs: int, top: int = TOP) -> None:
        self.k = min(top, n_outputs)
        self.label = torch.full((n,), -1, dtype=torch.int32)
        self.top = torch.zeros((n, self.k), dtype=torch.int32)
        self.prob = torch.zeros((n, self.k), dtype=torch.float32)

    def update(self, indices: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor) -> None:
        """Record a batch: dataset indices (N,), run classes (N,), softmax probabilities (N, outputs)."""
        p, i = probs.topk(self.k, dim=1)
        self.label[indices] = labels.int()
        self.top[indices] = i.int()
        self.prob[indices] = p.float()

    def state(self) -> dict:
        return {"label": self.label, "top": self.top, "prob": self.prob}

    def load(self, state: dict) -> None:
        self.label, self.top, self.prob = state["label"], state["top"], state["prob"]

    def merge(self, state: dict) -> None:
        seen = state["label"] >= 0
        for name in ("label", "top", "prob"):
            getattr(self, name)[seen] = state[name][seen]

    def table(self, name: Callable[[int], str], model_index: Sequence[int]) -> pa.Table:
        """The rows of the images seen, by dataset index. name(i): the image's path in the dataset;
        model_index[c]: the model output of run class c (-1: none, then ``correct`` is null)."""
        rows = torch.nonzero(self.label >= 0).flatten().numpy()
        label = self.label.numpy()[rows]
        top, prob = self.top.numpy()[rows], self.prob.numpy()[rows]
        want = np.asarray(model_index, dtype=np.int64)[label] if len(rows) else np.zeros(0, np.int64)
        offsets = np.arange(0, (len(rows) + 1) * self.k, self.k, dtype=np.int32)
        return pa.table({
            "image": rows.astype(np.int64), "path": [name(int(i)) for i in rows], "class": label,
            "top": pa.ListArray.from_arrays(offsets, top.reshape(-1)),
            "top_prob": pa.ListArray.from_arrays(offsets, prob.reshape(-1)),
            "correct": pa.array(top[:, 0] == want, mask=want < 0)}, schema=PREDICTIONS_SCHEMA)


def check_state(state: dict, what: str) -> dict:
    """The predictions of a saved state; states of an older summit (without them) are refused."""
    if "preds" not in state:
        raise SummitError(f"this {what} was made by an older summit without per-image predictions; "
                          "start the run again (--overwrite)")
    return state["preds"]
