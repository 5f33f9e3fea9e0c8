"""examples/notebook.ipynb runs top to bottom (its code cells in one namespace, matplotlib
off-screen): it trains, maps, plots and samples, and asserts its own results."""
import json
import os

import pytest

from conftest import ROOT


def test_notebook_runs():
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: the notebook is not run")
    import matplotlib

    matplotlib.use("Agg")
    with open(os.path.join(ROOT, "examples", "notebook.ipynb")) as f:
        nb = json.load(f)
    ns = {"__name__": "__notebook__"}
    for k, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"notebook cell {k}", "exec"), ns)
    assert ns["accuracy"] > 0.9
    p = ns["p"]
    assert p.num_regions > 20 and abs(p.areas.sum() - 4.0 * 2.5) < 1e-9
    assert ns["pts"].shape == (200, 2)
    assert abs(ns["logits"][:, 0] - ns["logits"][:, 1]).max() < 1e-9
