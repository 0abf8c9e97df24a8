"""Every loss counted (issue 10): the catalog's `losses` table, the stats report's table of the
most frequent unhandled constructs, and the recipe's flag/drop threshold, on a real build."""

from __future__ import annotations

import shutil

import duckdb
from conftest import FIXTURES

from astrodata.core.workspace import Workspace
from astrodata.corpus.build import CorpusOptions, build_corpus
from astrodata.corpus.recipe import load_recipe
from astrodata.corpus.stats import unhandled_constructs

LOSSY = r"""\documentclass{article}
\begin{document}
\title{A Paper Full of Private Macros}
\section{Intro}
""" + "\n".join(
    rf"Sentence {i} uses \privatecmd{{word{i}}} and then \othercmd{{more text}} in a line of plain prose here."
    for i in range(12)) + r"""
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


def test_build_records_losses_reports_them_and_drops_above_the_threshold(tmp_path):
    src = tmp_path / "eprints"
    shutil.copytree(FIXTURES / "eprints", src)
    (src / "2409.00009v1.tex").write_text(LOSSY)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("losses:\n  max_per_1k_words: 40\n  action: drop\n")
    assert load_recipe(recipe).losses.max_per_1k_words == 40
    work, out = tmp_path / "work", tmp_path / "out"
    build_corpus(work, CorpusOptions(out=out, eprints=[src], workers=1, progress=False, recipe=recipe))
    con = duckdb.connect(str(work / "catalog.duckdb"), read_only=True)
    try:
        got = dict(((k, n), c) for k, n, c in con.execute(
            "SELECT kind, name, count FROM losses WHERE doc_id = 'arxiv:2409.00009v1'").fetchall())
        status = con.execute("SELECT status, error FROM documents WHERE doc_id = 'arxiv:2409.00009v1'").fetchone()
        kept = con.execute("SELECT count(*) FROM documents WHERE status = 'done'").fetchone()[0]
    finally:
        con.close()
    assert got[("command", "\\privatecmd")] == 12 and got[("command", "\\othercmd")] == 12
    assert got[("environment", "tikzpicture")] == 1 and got[("math", "unclosed \\(")] == 1
    assert status == ("dropped", "losses: too-many-losses") and kept == 3
    report = (out / "stats.md").read_text()
    assert "## Unhandled constructs" in report and "| command | `\\privatecmd` | 1 | 12 |" in report
