"""Image parameterization (Lucid's): a batch of images as a 1/f-scaled Fourier spectrum in a
decorrelated colour space, and the same parameterization started from given images.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import SummitError

_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


COLOR_CORRELATION = _SVD_SQRT / _SVD_SQRT.norm(dim=0).max()


class FourierImage(nn.Module):
    """A batch of images as a decorrelated, 1/f-scaled Fourier spectrum.

    ``spectrum`` has shape (B, 3, H, W//2+1, 2) (real, imaginary); item i starts from
    N(0, sd) noise drawn with seed ``seeds[i]``. ``forward()`` -> (B, 3, H, W) RGB in [0, 1].
    """

    def __init__(self, size: int, seeds: Sequence[int], sd: float = 0.01,
                 decay_power: float = 1.0) -> None:
        super().__init__()
        self.size = size
        fy = torch.fft.fftfreq(size).view(-1, 1)
        fx = torch.fft.rfftfreq(size).view(1, -1)
        freqs = (fy * fy + fx * fx).sqrt()
        scale = freqs.clamp(min=1.0 / size).pow(-decay_power) * size
        self.register_buffer("scale", scale.unsqueeze(-1))  # (H, W//2+1, 1)
        self.register_buffer("color", COLOR_CORRELATION.clone())
        shape = (3, size, size // 2 + 1, 2)
        init = [torch.randn(shape, generator=torch.Generator().manual_seed(s)) * sd for s in seeds]
        self.spectrum = nn.Parameter(torch.stack(init))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum * self.scale)
        img = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        img = torch.einsum("bchw,dc->bdhw", img, self.color)
        return torch.sigmoid(img)


def fourier_from_images(images: torch.Tensor) -> FourierImage:
    """A FourierImage whose ``forward()`` starts at `images` (B, 3, S, S) in [0, 1] (values are
    clamped to [0.005, 0.995] so the sigmoid can be inverted)."""
    b, _, h, w = images.shape
    if h != w:
        raise SummitError(f"Fourier images are square, got {h}x{w}")
    image = FourierImage(h, [0] * b)
    y = torch.logit(images.detach().float().clamp(0.005, 0.995))
    z = torch.einsum("bdhw,cd->bchw", y, torch.linalg.inv(image.get_buffer("color")))
    spectrum = torch.fft.rfft2(z * 4.0) / image.get_buffer("scale")[..., 0]
    image.spectrum.data.copy_(torch.view_as_real(spectrum))
    return image
