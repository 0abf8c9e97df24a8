"""Every loss counted (issue 10): the catalog's `losses` table, the stats report's table of the
most frequent unhandled constructs, and the recipe's flag/drop threshold, on a real build."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from conftest import FIXTURES

from astrodata.core.workspace import Workspace
from astrodata.corpus.build import CorpusOptions, build_corpus
from astrodata.corpus.recipe import load_recipe
from astrodata.corpus.stats import unhandled_constructs

SENTENCES = """The survey covers the southern sky with four telescopes and a wide camera.
Each night yields thousands of images that are calibrated against standard stars.
We measure light curves for variable sources brighter than the detection limit.
Pulsating giants dominate the sample because their amplitudes are large.
Eclipsing binaries are identified from periodic dips in the folded photometry.
Flares on cool dwarfs appear as brief brightenings lasting a few minutes.
Quasars vary stochastically and are separated using their colours.
Supernova candidates are followed up with spectroscopy within two days.
Asteroids leave trails that are masked before the photometry is extracted.
The pipeline records every rejected frame together with the reason.
Completeness is estimated by injecting synthetic sources into real frames.
Future work will extend the analysis to the northern hemisphere fields.""".splitlines()
LOSSY = r"""\documentclass{article}
\begin{document}
\title{A Paper Full of Private Macros}
\section{Intro}
""" + "\n".join(rf"{s[:-1]} \privatecmd{{near target {i}}} and \othercmd{{case {i}}}." for i, s in enumerate(SENTENCES)) + r"""
\begin{tikzpicture}\draw (0,0) -- (1,1);\end{tikzpicture}
The rest of the prose \( is not closed.
\end{document}
"""


def test_record_losses_replaces_a_documents_rows(tmp_path):
    with Workspace(tmp_path) as ws:
        ws.record_losses("d1", {("command", "\\x"): 2, ("math", "unclosed $"): 1}, run_id="r1")
        ws.record_losses("d1", {("command", "\\y"): 3}, run_id="r2")
        ws.record_losses("d2", {("command", "\\y"): 1, ("template", "val"): 0})
        assert ws.con.execute("SELECT doc_id, run_id, kind, name, count FROM losses ORDER BY doc_id").fetchall() == [
            ("d1", "r2", "command", "\\y", 3), ("d2", None, "command", "\\y", 1)]
        assert unhandled_constructs(ws.con) == [{"kind": "command", "name": "\\y", "documents": 2, "occurrences": 4}]


@pytest.mark.parametrize("action", ["drop", "flag"])
def test_build_records_losses_reports_them_and_acts_above_the_threshold(tmp_path, action):
    src = tmp_path / "eprints"
    shutil.copytree(FIXTURES / "eprints", src)
    (src / "2409.00009v1.tex").write_text(LOSSY)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"losses:\n  max_per_1k_words: 40\n  action: {action}\n")
    assert load_recipe(recipe).losses.max_per_1k_words == 40
    work, out = tmp_path / "work", tmp_path / "out"
    build_corpus(work, CorpusOptions(out=out, eprints=[src], workers=1, progress=False, recipe=recipe))
    con = duckdb.connect(str(work / "catalog.duckdb"), read_only=True)
    try:
        got = dict(((k, n), c) for k, n, c in con.execute(
            "SELECT kind, name, count FROM losses WHERE doc_id = 'arxiv:2409.00009v1'").fetchall())
        status, error, details = con.execute(
            "SELECT status, error, details FROM documents WHERE doc_id = 'arxiv:2409.00009v1'").fetchone()
        kept = con.execute("SELECT count(*) FROM documents WHERE status = 'done'").fetchone()[0]
    finally:
        con.close()
    assert got[("command", "\\privatecmd")] == 12 and got[("command", "\\othercmd")] == 12
    assert got[("environment", "tikzpicture")] == 1 and got[("math", "unclosed \\(")] == 1
    if action == "drop":
        assert (status, error) == ("dropped", "losses: too-many-losses") and kept == 3
    else:
        assert (status, error) == ("done", None), (status, error)
        assert json.loads(details)["losses_flagged"] > 40 and kept == 4
    report = (out / "stats.md").read_text()
    assert "## Unhandled constructs" in report and "| command | `\\privatecmd` | 1 | 12 |" in report
