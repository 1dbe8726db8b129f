"""Pixels in and out of a model: the resize + centre crop every model input gets, and tensors
back to images."""
from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms


def image_transform(size: int = 224) -> transforms.Compose:
    """Resize the short side to size*256/224, center crop, to a [0, 1] RGB tensor."""
    return transforms.Compose([transforms.Resize(int(round(size * 256 / 224))),
                               transforms.CenterCrop(size), transforms.ToTensor()])


def to_pil(img: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> RGB PIL image."""
    arr = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr, "RGB")
