"""The aggregation pipeline: dataset (ImageFolder, ImageNet val, WebDataset, Hugging Face) -> model
hooks -> accumulators (activations, influence, dataset examples) -> the run's Parquet tables,
streamed with flat memory, exact resume, shards and torchrun.
"""
from __future__ import annotations

from ..lazy import exports

_HOMES = {
    "AggregateConfig": "aggregator", "Aggregator": "aggregator", "aggregate": "aggregator", "merge": "aggregator",
    "BUNDLED_SAMPLE": "data", "SafeImageFolder": "data", "DatasetAdapter": "data", "collate": "data",
    "FORMATS": "sources", "detect_format": "sources", "open_source": "sources",
    "ActivationAccumulator": "activations", "PredictionsAccumulator": "predictions",
    "InfluenceAccumulator": "influence", "LayerPair": "influence", "build_pairs": "influence",
    "conv_topk": "convmax", "per_channel_conv_max": "convmax", "topk_canonical": "convmax",
    "SparseCounter": "counter",
    "ExamplesAccumulator": "examples", "PATCH_PX": "examples",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = exports(__name__, _HOMES)
