"""The README's results table is the one results/kodak/results.json gives, and that file measures
the shipped default model on all of Kodak: the published numbers cannot drift from the data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nic.eval.published import KODAK
from nic.models import registry
from nic.quality import STANDARD_QUALITIES

pytestmark = pytest.mark.fast

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "results_table.py"
_spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
results_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_table)


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(results_table.RESULTS.read_text())


def test_readme_table_is_the_one_results_give(results):
    readme = results_table.README.read_text()
    assert results_table.with_table(readme, results) == readme, \
        "README.md's results table is stale: run python scripts/results_table.py"


def test_table_rows_are_every_curve_against_jpeg(results):
    rows = results_table.table(results).splitlines()[2:]
    labels = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert results["bdrate"]["anchor"] == "jpeg"
    assert f"nic {registry.DEFAULT_MODEL}" in labels and "WebP" in labels and "JPEG (4:2:0)" not in labels
    assert any(label.endswith("(published)") for label in labels)
    assert len(labels) == len(results["curves"]) - 1


def test_results_measure_the_shipped_default_on_all_of_kodak(results):
    default = results["codecs"][registry.DEFAULT_MODEL]
    shipped = Path(registry.available()[registry.DEFAULT_MODEL]["path"])
    assert default["version"] == registry.weights_hash_of(shipped).hex(), \
        "results/kodak measured other weights than the shipped default: re-run nic eval (see README)"
    assert set(results["images"]) == KODAK
    assert tuple(default["params"]) == STANDARD_QUALITIES
    for quality in default["params"]:
        images = [r["image"] for r in results["records"]
                  if r["codec"] == registry.DEFAULT_MODEL and r["param"] == quality]
        assert sorted(images) == sorted(KODAK), quality


def test_check_fails_on_a_stale_table_and_rewrites_it(results, tmp_path, monkeypatch, capsys):
    fresh = results_table.with_table(results_table.README.read_text(), results)
    row = f"| nic {registry.DEFAULT_MODEL} | "
    stale = tmp_path / "README.md"
    stale.write_text(fresh.replace(row, row + "-99.9% | ", 1))
    monkeypatch.setattr(results_table, "README", stale)
    assert results_table.main(["--check"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert results_table.main([]) == 0
    assert stale.read_text() == fresh
    assert results_table.main(["--check"]) == 0


def test_a_readme_without_markers_is_an_error(results):
    with pytest.raises(ValueError, match="results:begin"):
        results_table.with_table("# nic\n", results)
