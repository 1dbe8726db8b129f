"""Forward hooks that capture named module outputs (and inputs) during one forward pass."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def get_module(root: nn.Module, path: str) -> nn.Module:
    """Return the submodule at a dotted path ("" is the root)."""
    return root.get_submodule(path) if path else root


class Taps:
    """Context manager recording outputs of `outputs` and inputs of `inputs` module paths.

    Captured tensors are available in ``self.out[path]`` / ``self.inp[path]`` after a forward.
    Hooks are always removed on exit, even on error.
    """

    def __init__(self, root: nn.Module, outputs: Iterable[str] = (), inputs: Iterable[str] = (),
                 detach: bool = True) -> None:
        self.root = root
        self.output_paths = list(dict.fromkeys(outputs))
        self.input_paths = list(dict.fromkeys(inputs))
        self.detach = detach
        self.out: dict[str, torch.Tensor] = {}
        self.inp: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _grab(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach() if self.detach else t

    def __enter__(self) -> "Taps":
        for path in self.output_paths:
            def hook(_m, _i, o, path=path):
                self.out[path] = self._grab(o)
            self._handles.append(get_module(self.root, path).register_forward_hook(hook))
        for path in self.input_paths:
            def pre(_m, args, path=path):
                self.inp[path] = self._grab(args[0])
            self._handles.append(get_module(self.root, path).register_forward_pre_hook(pre))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def clear(self) -> None:
        self.out.clear()
        self.inp.clear()
