"""Run directories: the Parquet tables and ``run.json`` a run holds (store), how files are
written safely (files), every name inside a run folder (layout), Summit's activation
selections (selection) and the ImageNet-1k class table (imagenet).
"""
from __future__ import annotations

from ..lazy import exports

_HOMES = {
    "Run": "store", "HIST_BINS": "store", "hist_bin": "store", "IMAGE_PARTS": "store", "IMAGE_VIEWS": "store",
    "SCHEMA_VERSION": "store", "ACTIVATION_SCHEMA": "store", "INFLUENCE_SCHEMA": "store",
    "CLASS_SCHEMA": "store", "write_influence": "store", "array_rows": "store",
    "atomic_file": "files", "atomic_write_bytes": "files", "write_table": "files", "write_json": "files",
    "output_dir": "files", "output_file": "files", "write_output": "files", "is_stdout": "files", "json_bytes": "files",
    "remove_stale_of": "files", "check_replaceable": "files", "replacing": "files",
    "staging_dir": "files", "replace_dir": "files", "is_temp": "files", "file_inside": "files",
    "RUN_JSON": "layout", "CLASSES_FILE": "layout", "ACTIVATIONS_FILE": "layout", "INFLUENCE_FILE": "layout",
    "EXAMPLES_FILE": "layout", "PREDICTIONS_FILE": "layout", "EMBEDDING_FILE": "layout",
    "GRAPHS_FILE": "layout", "RUN_FILES": "layout", "SHARD_FILE": "layout",
    "SPLIT_DIR": "layout", "SPLIT_PARTS": "layout", "split_dir": "layout",
    "is_run_file": "layout", "examples_path": "layout", "featurevis_path": "layout",
    "diversity_path": "layout", "diversity_counts": "layout", "BLOCKS_DIR": "layout",
    "UBIQUITOUS_CLASSES": "selection", "UBIQUITOUS_IMAGES": "selection", "selection_names": "selection",
    "mass_select": "selection", "top_select": "selection", "default_selection": "selection",
    "ubiquitous_channels": "selection",
    "ImagenetClass": "imagenet", "imagenet_table": "imagenet", "resolve_folder": "imagenet",
    "label_key": "imagenet", "wnid_of": "imagenet", "IMAGENET_TABLE_FILE": "imagenet",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = exports(__name__, _HOMES)
