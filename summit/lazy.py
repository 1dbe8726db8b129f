"""Lazy public APIs for the subpackages (PEP 562): each ``__init__`` names its public API and the
module each name lives in; a name's module is imported on first use, so ``import summit.graph``
costs nothing and the torch-free parts (server, graphs, exports) never import torch."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def exports(package: str, homes: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names live in the submodules
    ``homes[name]``."""
    def getattr_(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    def dir_() -> list[str]:
        return sorted(homes)

    return getattr_, dir_
