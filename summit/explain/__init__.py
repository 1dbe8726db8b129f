"""Building Blocks of one image (Distill): images in, arrays out (attribution, neuron groups,
the explanation, a misclassified image's channels: mistake), pictures from arrays (drawing).
"""
from __future__ import annotations

from ..lazy import exports

_HOMES = {
    "Explainer": "explainer", "explain": "explainer", "GRID": "explainer", "TOP_CLASSES": "explainer",
    "VIS": "explainer",
    "Explanation": "result", "LayerExplanation": "result", "strongest": "result",
    "MISTAKE_CHANNELS": "mistake", "mistake_json": "mistake", "true_entry": "mistake",
    "ImageInput": "images", "MAX_FILE_BYTES": "images", "file_image": "images", "dataset_image": "images",
    "dataset_listing": "images", "example_images": "images",
    "mistake_images": "images", "store_upload": "images",
    "upload_image": "images",
    "Groups": "groups", "factorize": "groups", "DEFAULT_GROUPS": "groups", "MAX_GROUPS": "groups",
    "forward": "attribution", "layer_attribution": "attribution",
    "PALETTE": "drawing", "heatmap": "drawing", "group_map": "drawing", "dictionary": "drawing",
    "write_explanation": "drawing", "write_renders": "drawing",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = exports(__name__, _HOMES)
