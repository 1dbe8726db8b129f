"""docs/notebooks/summit_tour.ipynb runs headless (nbclient, a real ipykernel) without errors and
shows its pictures inline."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "notebooks" / "summit_tour.ipynb"


def test_notebook_runs_and_renders_inline(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any error
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    kinds = [set().union(*(o.get("data", {}).keys() for o in c.outputs)) if c.outputs else set() for c in code]
    assert "image/svg+xml" in kinds[1]  # the class graph
    mistakes = code[2].outputs[-1]["data"]["text/html"]  # the bald eagle's correct vs wrong images
    assert "correct images vs wrong images" in mistakes and "<svg" in mistakes and "bald eagle" in mistakes
    assert "'label': " in code[2].outputs[0]["text"]  # what it is mistaken for
    assert "text/html" in kinds[3] and "data:image/png;base64," in code[3].outputs[-1]["data"]["text/html"]
    assert "text/html" in kinds[4] and "semantic dictionary" in code[4].outputs[-1]["data"]["text/html"]
    assert not any(p.name != "summit_tour.ipynb" for p in NOTEBOOK.parent.iterdir())  # no stray outputs
