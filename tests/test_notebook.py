"""examples/mnist_cnn.ipynb runs top to bottom on real MNIST with a small LIMIT (nbclient, a
kernel on this very Python), shows its figures inline, and is committed without outputs."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "examples" / "mnist_cnn.ipynb"
LIMIT = 2000
EPOCHS = 2


def test_notebook_is_committed_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:2]
    assert "LIMIT" in "".join(code_cells[0]["source"])  # the knob for a quick run comes first


def _require(module: str):
    """Import a test tool, or fail under CI / skip elsewhere with how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"the notebook test needs {module}: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI installs the test extra)")
        pytest.skip(message)


def _python_kernel(folder: Path) -> None:
    """A kernelspec named python3 that starts a kernel on sys.executable (this venv)."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (minicnn tests)", "language": "python"}))


def test_notebook_runs_top_to_bottom_on_real_mnist(mnist_dir, tmp_path, monkeypatch):
    nbformat = _require("nbformat")
    NotebookClient = _require("nbclient").NotebookClient

    _python_kernel(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    monkeypatch.setenv("MINICNN_NOTEBOOK_LIMIT", str(LIMIT))
    monkeypatch.setenv("MINICNN_NOTEBOOK_EPOCHS", str(EPOCHS))
    # The kernel imports minicnn from this checkout whether or not it is pip-installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    work = tmp_path / "work"
    work.mkdir()

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(work)}})
    try:
        client.execute()  # raises CellExecutionError on any error, with the cell and traceback
    finally:
        nbformat.write(notebook, work / "mnist_cnn.executed.ipynb")  # to look at after a failure

    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    text = "\n".join(output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                     for cell in code_cells for output in cell.outputs)
    assert f"({LIMIT}, 28, 28) uint8 ({LIMIT},) ({LIMIT}, 28, 28)" in text  # LIMIT was applied
    assert "Total params:" in text and "test accuracy:" in text
    accuracy = float(text.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 70, accuracy  # 2 epochs on 2,000 images (84 % here); chance is 10 %
    figures = [cell.source.splitlines()[0] for cell in code_cells
               if any("image/png" in output.get("data", {}) for output in cell.outputs)]
    assert len(figures) == 4, figures  # X_train[0], training curves, predictions, confusions
    assert any("plot_history" in f for f in figures)
    assert any("plot_confusion_matrix" in f for f in figures)
