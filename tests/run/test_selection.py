"""Activation selections against a brute-force sort, and ubiquitous-channel detection."""
from __future__ import annotations

import numpy as np
import torch

from summit.run.selection import default_selection, mass_select, top_select, ubiquitous_channels


def brute_mass(row: list[float], tau: float) -> set[int]:
    """Summit's loop: normalise, sort descending (ties: lower channel first), add while mass < tau."""
    v = [max(x, 0.0) for x in row]
    total = sum(v)
    if total <= 0:
        return set()
    order = sorted(range(len(v)), key=lambda c: (-v[c], c))
    chosen, mass = [], 0.0
    while mass < tau and len(chosen) < len(v):
        chosen.append(order[len(chosen)])
        mass += v[chosen[-1]] / total
    return set(chosen)


def test_mass_selection_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 40, generator=g) ** 4
    x[3] = 0.0  # nothing active: nothing selected
    x[4] = 0.0
    x[4, :10] = 1.0  # ties: ten channels of 0.1 each
    x[5] = torch.linspace(-1, 1, 40)  # negative maxima count as 0
    for tau in (0.01, 0.03, 0.1, 0.5, 1.0):
        got = mass_select(x, tau)
        for n in range(len(x)):
            assert set(torch.nonzero(got[n]).flatten().tolist()) == brute_mass(x[n].tolist(), tau), (tau, n)
    assert mass_select(x, 0.03)[4].sum() == 1 and mass_select(x, 0.15)[4].tolist()[:3] == [True, True, False]


def test_top_selection_and_defaults():
    x = torch.tensor([[0.1, 0.5, 0.5, 0.2], [3.0, 1.0, 2.0, 0.0]])
    assert top_select(x, 2).tolist() == [[False, True, True, False], [True, False, True, False]]
    assert default_selection(["mass0.01", "mass0.03", "top5"]) == "mass0.03"
    assert default_selection(["mass0.01", "mass0.03", "top5"], "embedding") == "mass0.01"
    assert default_selection(["top5"], "embedding") == "top5"


def test_ubiquitous_channels():
    n_images = np.array([4, 4, 2, 0])
    count = np.array([[4, 0, 2, 1], [3, 0, 2, 1], [2, 2, 0, 1], [0, 0, 0, 0]])
    chans, share = ubiquitous_channels(count, n_images)
    # channel 0 belongs to all 3 classes with images, channel 2 to 2 of 3 (> 0.5), channel 3 to 1
    assert chans.tolist() == [0, 2] and np.allclose(share, [1.0, 2 / 3])
    assert ubiquitous_channels(count, n_images, classes=0.7)[0].tolist() == [0]
    assert ubiquitous_channels(count, np.zeros(4, int))[0].size == 0
