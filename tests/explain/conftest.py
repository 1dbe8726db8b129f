"""The explainer of the sample run, shared by the explain tests (the model is loaded once)."""
from __future__ import annotations

from pathlib import Path

import pytest

from summit.explain.explainer import Explainer


@pytest.fixture(scope="session")
def explainer(sample_run: Path) -> Explainer:
    return Explainer(sample_run)
