"""Corpus stats: stats.json numbers, stats.md report and readable PNG plots."""

from __future__ import annotations

import json

import numpy as np

from astrodata.corpus.filters import Drop
from astrodata.corpus.stats import corpus_stats, write_report

ROWS = [
    {"id": "a1", "source": "arxiv", "text": "one two three four", "n_tokens": 6},
    {"id": "a2", "source": "arxiv", "text": "five six", "n_tokens": 3000},
    {"id": "w1", "source": "wikipedia", "text": "seven eight nine", "n_tokens": 40},
    {"id": "t1", "source": "textbook", "text": "ten", "n_tokens": None},
]
DROPS = [Drop("x1", "language", 0.1, "P(en) >= 0.5"), Drop("x2", "length", 3, "words >= 50"),
         {"filter": "length", "value": 7}]


def test_stats_numbers():
    stats = corpus_stats(ROWS, DROPS, cluster_sizes={2: 5, 3: 1}, extra={"decontamination": {"mmlu": 2}})
    assert (stats["documents"], stats["tokens"], stats["words"]) == (4, 3046, 10)
    assert stats["documents_without_token_count"] == 1
    arxiv = stats["per_source"]["arxiv"]
    assert (arxiv["documents"], arxiv["tokens"], arxiv["words"], arxiv["median_tokens"]) == (2, 3006, 6, 1503.0)
    assert stats["per_source"]["textbook"]["mean_tokens"] is None
    assert stats["drops_per_filter"] == {"length": 2, "language": 1} and stats["dropped_by_filters"] == 3
    assert stats["duplicate_clusters_per_size"] == {"2": 5, "3": 1} and stats["duplicates_removed"] == 7
    hist = stats["token_length_histogram"]
    assert sum(sum(c) for c in hist["counts_per_source"].values()) == 3  # documents with a count
    edges = hist["bin_edges"]
    counts = hist["counts_per_source"]["arxiv"]
    assert counts[next(i for i in range(len(edges) - 1) if edges[i] <= 3000 < edges[i + 1])] == 1
    assert stats["decontamination"] == {"mmlu": 2}


def test_report_files_and_plots(tmp_path):
    stats = corpus_stats(ROWS, DROPS, cluster_sizes={2: 5, 3: 1})
    paths = write_report(tmp_path, stats)
    assert json.loads((tmp_path / "stats.json").read_text())["tokens"] == 3046
    md = (tmp_path / "stats.md").read_text()
    assert "| arxiv | 2 | 3,006 | 6 | 1,503 | 1,503 |" in md and "| length | 2 |" in md and "| 3 | 1 |" in md
    import matplotlib.image as mpimg

    for key in ("tokens_per_source", "length_histogram", "drops_per_filter", "duplicates_per_cluster_size"):
        assert f"plots/{paths[key].name}" in md
        image = mpimg.imread(paths[key])
        assert image.shape[0] > 200 and image.shape[1] > 500 and np.std(image) > 0.05, key


def test_empty_stages_are_said_not_drawn(tmp_path):
    paths = write_report(tmp_path, corpus_stats(ROWS[:1]))
    md = (tmp_path / "stats.md").read_text()
    assert "No document was dropped" in md and "No duplicate clusters" in md
    assert "drops_per_filter" not in paths and not (tmp_path / "plots" / "drops_per_filter.png").exists()
