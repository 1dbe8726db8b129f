"""Neuron groups: one image's activations of a layer factored into a few non-negative groups.

As in "The Building Blocks of Interpretability" (Olah et al., Distill 2018), the (positions x
channels) activation matrix is factored with non-negative matrix factorization (scikit-learn's
``NMF``, deterministic NNDSVDa start): ``A ~= W @ D`` with W (positions x groups) the group's
*region map* over the image and D (groups x channels) the group's *channel direction*. Groups
are ordered by their share of the reconstruction, and each direction is scaled to unit length
(its map carries the magnitude). The attribution of a group to a target is the gradient dotted
with the group's part of the activations, ``sum_{p,c} grad[c, p] * W[p, g] * D[g, c]``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SummitError

DEFAULT_GROUPS = 6
MAX_GROUPS = 32


@dataclass
class Groups:
    """NMF of one layer's activations of one image."""

    maps: np.ndarray  # (G, H, W) >= 0: where each group is active
    directions: np.ndarray  # (G, C) >= 0, unit length: which channels make up each group
    error: float  # ||A - W D||_F / ||A||_F (0 for an all-zero layer)

    @property
    def n(self) -> int:
        return len(self.directions)

    def reconstruction(self) -> np.ndarray:
        """(C, H, W) activations as the groups rebuild them."""
        g, h, w = self.maps.shape
        return (self.maps.reshape(g, h * w).T @ self.directions).T.reshape(-1, h, w)

    def attribution(self, grad: torch.Tensor | np.ndarray) -> np.ndarray:
        """(..., G) attribution of each group to the target(s) of `grad` (..., C, H, W)."""
        grad = np.asarray(grad.detach().cpu() if isinstance(grad, torch.Tensor) else grad, dtype=np.float64)
        return np.einsum("...chw,ghw,gc->...g", grad, self.maps, self.directions)


def factorize(acts: torch.Tensor | np.ndarray, n_groups: int = DEFAULT_GROUPS, seed: int = 0,
              max_iter: int = 400, tol: float = 1e-4) -> Groups:
    """Factor (C, H, W) activations into `n_groups` groups. Negative activations (layers without
    a ReLU at the end) are set to 0 first: NMF needs a non-negative matrix."""
    a = np.asarray(acts.detach().cpu() if isinstance(acts, torch.Tensor) else acts, dtype=np.float32)
    if a.ndim != 3:
        raise SummitError(f"groups need (C, H, W) activations, got shape {a.shape}")
    c, h, w = a.shape
    if not 1 <= n_groups <= min(MAX_GROUPS, c, h * w):
        raise SummitError(f"groups must be in 1..{min(MAX_GROUPS, c, h * w)} for a {c}x{h}x{w} layer, "
                          f"got {n_groups}")
    m = np.maximum(a.reshape(c, h * w).T, 0.0)
    total = float(np.linalg.norm(m))
    if total == 0.0:
        return Groups(np.zeros((n_groups, h, w)), np.zeros((n_groups, c)), 0.0)
    from sklearn.decomposition import NMF
    from threadpoolctl import threadpool_limits
    model = NMF(n_components=n_groups, init="nndsvda", random_state=seed, max_iter=max_iter, tol=tol)
    # one BLAS thread: these matrices are small, and spinning threads on busy cores cost 5-10x
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # ConvergenceWarning: the factors are used as they are
        wmat = model.fit_transform(m).astype(np.float64)
    dirs = model.components_.astype(np.float64)
    norms = np.linalg.norm(dirs, axis=1)
    wmat *= norms
    dirs = np.divide(dirs, norms[:, None], out=np.zeros_like(dirs), where=norms[:, None] > 0)
    order = np.argsort(-wmat.sum(0), kind="stable")
    wmat, dirs = wmat[:, order], dirs[order]
    error = float(np.linalg.norm(m - wmat @ dirs) / total)
    return Groups(wmat.T.reshape(n_groups, h, w), dirs, error)
