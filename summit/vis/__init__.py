"""Feature visualization as Lucid and torch-lucent split it: image parameterization (param),
transforms, objectives, the optimization (render) and rendered images on disk (cache).
"""
from __future__ import annotations

from ..lazy import exports

_HOMES = {
    "FourierImage": "param", "fourier_from_images": "param",
    "Transforms": "transform", "STANDARD_TRANSFORMS": "transform",
    "Objective": "objectives", "channel": "objectives", "channels": "objectives", "neuron": "objectives",
    "direction": "objectives", "direction_neuron": "objectives", "directions": "objectives",
    "dream": "objectives", "diversity": "objectives",
    "visualize": "render", "render_dream": "render", "render_diversity": "render",
    "redirected_relu": "render", "check_channels": "render", "check_diversity": "render",
    "render_cached": "cache", "render_run": "cache", "render_diversity_run": "cache",
    "direction_paths": "cache", "render_directions_cached": "cache",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = exports(__name__, _HOMES)
