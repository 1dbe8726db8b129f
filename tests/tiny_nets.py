"""Small networks with real torchvision blocks for tests that need exact brute-force references
(shared by tests/pipeline and tests/graph)."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.googlenet import Inception

from summit.model.models import Classifier, ModelSpec, Normalize


def randomize_bn(net: nn.Module) -> None:
    g = torch.Generator().manual_seed(2)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
            m.running_mean = torch.randn(m.num_features, generator=g)


class TinyGoogLeNet(nn.Module):
    """Stem + two InceptionV1 blocks with a max pool between them (as inception3b -> 4a)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.inception3a = Inception(8, 4, 3, 5, 2, 3, 2)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3b = Inception(14, 3, 4, 6, 2, 4, 3)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception3b(self.pool(self.inception3a(torch.relu(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


def tiny_spec(name: str, net: nn.Module, layers: dict[str, str]) -> ModelSpec:
    net.eval()
    return ModelSpec(name, "random", Classifier(net, Normalize((0, 0, 0), (1, 1, 1))).eval(), layers,
                     [str(i) for i in range(10)])
