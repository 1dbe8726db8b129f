"""Robustness transforms applied to the images at every optimization step: random padding,
jitter, scale and rotation (Lucid's standard set).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Transforms:
    """Lucid's standard transforms: pad, jitter, random scale, random rotate, jitter.

    One random draw per step for the whole batch, from the generator passed in.
    """

    pad: int = 12
    jitter: tuple[int, int] = (8, 4)
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = F.pad(x, [self.pad] * 4, value=0.5)
        x = _jitter(x, self.jitter[0], g)
        s = self.scales[_randint(len(self.scales), g)]
        a = math.radians(self.angles[_randint(len(self.angles), g)])
        n, c, h, w = x.shape
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                             dtype=x.dtype, device=x.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, c, max(1, round(h * s)), max(1, round(w * s))],
                             align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return _jitter(x, self.jitter[1], g)


def _randint(n: int, g: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=g))


def _jitter(x: torch.Tensor, d: int, g: torch.Generator) -> torch.Tensor:
    """Random crop that removes `d` pixels from each spatial dimension."""
    if d <= 0:
        return x
    oy, ox = _randint(d + 1, g), _randint(d + 1, g)
    h, w = x.shape[-2:]
    return x[..., oy:oy + h - d, ox:ox + w - d]


STANDARD_TRANSFORMS = Transforms()
