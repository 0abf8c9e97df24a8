"""Corpus statistics: `stats.json` plus a readable `stats.md` report with PNG plots.

`corpus_stats` makes one streaming pass over the final rows (counts per source, a token-length
histogram on shared log bins) and folds in what the earlier stages report: drops per filter,
duplicate clusters per size, anything else (decontamination counts) under `extra`. Everything
the report draws is in the JSON, so `write_report` can redraw it from `stats.json` alone.
Plots use matplotlib's object API (`Figure`, Agg canvas): no pyplot state, no display needed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from astrodata.core.shards import write_stats

PLOTS_DIR = "plots"
# token-length bins: 1 .. 10^7 tokens, 5 bins a decade (documents range from stubs to books)
BIN_EDGES = [0, *np.round(np.logspace(0, 7, 36)).astype(int).tolist()]


def _drop_filter(drop: Any) -> str:
    return drop["filter"] if isinstance(drop, Mapping) else drop.filter


def corpus_stats(
    rows: Iterable[Mapping[str, Any]],
    drops: Iterable[Any] = (),
    cluster_sizes: Mapping[int, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Stats of the final rows; `drops` are `filters.Drop`s or dicts with a `filter` key,
    `cluster_sizes` maps a duplicate cluster's size to how many clusters have it."""
    per_source: dict[str, dict[str, Any]] = {}
    tokens: dict[str, list[int]] = {}
    missing_tokens = 0
    for row in rows:
        src = row.get("source") or "unknown"
        s = per_source.setdefault(src, {"documents": 0, "tokens": 0, "words": 0, "characters": 0})
        text = row.get("text") or ""
        s["documents"] += 1
        s["words"] += len(text.split())
        s["characters"] += len(text)
        n = row.get("n_tokens")
        if n is None:
            missing_tokens += 1
        else:
            s["tokens"] += int(n)
            tokens.setdefault(src, []).append(int(n))
    histogram: dict[str, list[int]] = {}
    for src, s in per_source.items():
        counts = np.asarray(tokens.get(src, []), dtype=np.int64)
        s["mean_tokens"] = float(counts.mean()) if len(counts) else None
        s["median_tokens"] = float(np.median(counts)) if len(counts) else None
        histogram[src] = np.histogram(np.clip(counts, 0, BIN_EDGES[-1] - 1), bins=BIN_EDGES)[0].tolist()

    drops_per_filter: dict[str, int] = {}
    for drop in drops:
        name = _drop_filter(drop)
        drops_per_filter[name] = drops_per_filter.get(name, 0) + 1
    clusters = {int(k): int(v) for k, v in (cluster_sizes or {}).items()}
    stats: dict[str, Any] = {
        "documents": sum(s["documents"] for s in per_source.values()),
        "tokens": sum(s["tokens"] for s in per_source.values()),
        "words": sum(s["words"] for s in per_source.values()),
        "characters": sum(s["characters"] for s in per_source.values()),
        "documents_without_token_count": missing_tokens,
        "per_source": dict(sorted(per_source.items())),
        "token_length_histogram": {"bin_edges": BIN_EDGES, "counts_per_source": dict(sorted(histogram.items()))},
        "dropped_by_filters": sum(drops_per_filter.values()),
        "drops_per_filter": dict(sorted(drops_per_filter.items(), key=lambda kv: (-kv[1], kv[0]))),
        "duplicate_clusters_per_size": {str(k): v for k, v in sorted(clusters.items())},
        "duplicates_removed": sum((size - 1) * n for size, n in clusters.items()),
    }
    if extra:
        stats.update(extra)
    return stats


# -- plots -----------------------------------------------------------------------------------
def _figure(width: float = 7.0, height: float = 4.0) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.subplots()


def _bar(path: Path, labels: list[str], values: list[float], title: str, xlabel: str,
         fmt: str = "{:,.0f}") -> Path:
    from matplotlib.ticker import EngFormatter, MaxNLocator

    fig, ax = _figure(height=max(2.5, 0.45 * len(labels) + 1.2))
    bars = ax.barh(labels[::-1], values[::-1], color="#3b6ea5")
    ax.bar_label(bars, labels=[fmt.format(v) for v in values[::-1]], padding=3, fontsize=9)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 400k, 3.3G: readable at any scale
    ax.margins(x=0.15)
    fig.savefig(path)
    return path


def _length_histogram(path: Path, hist: Mapping[str, Any]) -> Path:
    edges = np.asarray(hist["bin_edges"], dtype=float)
    fig, ax = _figure()
    lefts = np.maximum(edges[:-1], 0.5)  # the [0, 1) bin is drawn from 0.5 on the log axis
    bottom = np.zeros(len(lefts))
    for src, counts in hist["counts_per_source"].items():
        counts = np.asarray(counts, dtype=float)
        ax.bar(lefts, counts, width=edges[1:] - lefts, bottom=bottom, align="edge", label=src,
               edgecolor="white", linewidth=0.3)
        bottom += counts
    ax.set_xscale("log")
    occupied = np.flatnonzero(bottom)
    if len(occupied):  # zoom on the bins that hold documents
        ax.set_xlim(lefts[occupied[0]] / 1.5, edges[occupied[-1] + 1] * 1.5)
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("documents")
    ax.set_title("Document length")
    ax.legend()
    fig.savefig(path)
    return path


def write_plots(out_dir: str | Path, stats: Mapping[str, Any]) -> dict[str, Path]:
    """PNG plots under `out_dir/plots/`; a plot with nothing to show is not drawn."""
    folder = Path(out_dir) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    sources = stats["per_source"]
    if sources:
        names = list(sources)
        plots["tokens_per_source"] = _bar(folder / "tokens_per_source.png", names,
                                          [sources[s]["tokens"] for s in names], "Tokens per source", "tokens")
        plots["length_histogram"] = _length_histogram(folder / "length_histogram.png",
                                                      stats["token_length_histogram"])
    if stats["drops_per_filter"]:
        drops = stats["drops_per_filter"]
        plots["drops_per_filter"] = _bar(folder / "drops_per_filter.png", list(drops), list(drops.values()),
                                         "Documents dropped per filter", "documents")
    if stats["duplicate_clusters_per_size"]:
        sizes = stats["duplicate_clusters_per_size"]
        plots["duplicates_per_cluster_size"] = _bar(
            folder / "duplicates_per_cluster_size.png", [f"size {k}" for k in sizes], list(sizes.values()),
            "Duplicate clusters per size", "clusters")
    return plots


# -- report ----------------------------------------------------------------------------------
def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def unhandled_constructs(con: Any, limit: int = 30) -> list[dict[str, Any]]:
    """The most frequent constructs the converters could not render faithfully, from the catalog's
    `losses` table (DuckDB connection `con`): kind, name, documents met in, occurrences; most
    documents first."""
    rows = con.execute(
        "SELECT kind, name, count(DISTINCT doc_id) AS documents, sum(count) AS occurrences FROM losses "
        "GROUP BY kind, name ORDER BY documents DESC, occurrences DESC, kind, name LIMIT ?", [limit]).fetchall()
    return [{"kind": k, "name": n, "documents": d, "occurrences": int(o)} for k, n, d, o in rows]


def render_markdown(stats: Mapping[str, Any], plots: Mapping[str, Path]) -> str:
    lines = ["# Corpus statistics", "",
             f"{_num(stats['documents'])} documents, {_num(stats['tokens'])} tokens, "
             f"{_num(stats['words'])} words.", ""]
    if stats.get("documents_without_token_count"):
        lines += [f"{_num(stats['documents_without_token_count'])} documents have no token count yet.", ""]
    lines += ["## Sources", "", "| source | documents | tokens | words | mean tokens | median tokens |",
              "|---|---:|---:|---:|---:|---:|"]
    for src, s in stats["per_source"].items():
        lines.append(f"| {src} | {_num(s['documents'])} | {_num(s['tokens'])} | {_num(s['words'])} | "
                     f"{_num(s['mean_tokens'])} | {_num(s['median_tokens'])} |")
    for key, title in [("tokens_per_source", "Tokens per source"), ("length_histogram", "Document length")]:
        if key in plots:
            lines += ["", f"![{title}]({PLOTS_DIR}/{plots[key].name})"]
    lines += ["", "## Quality filters", ""]
    if stats["drops_per_filter"]:
        lines += [f"{_num(stats['dropped_by_filters'])} documents dropped.", "", "| filter | dropped |",
                  "|---|---:|"]
        lines += [f"| {name} | {_num(n)} |" for name, n in stats["drops_per_filter"].items()]
        lines += ["", f"![Drops per filter]({PLOTS_DIR}/{plots['drops_per_filter'].name})"]
    else:
        lines.append("No document was dropped by the filters.")
    lines += ["", "## Duplicates", ""]
    if stats["duplicate_clusters_per_size"]:
        lines += [f"{_num(stats['duplicates_removed'])} duplicates removed.", "", "| cluster size | clusters |",
                  "|---:|---:|"]
        lines += [f"| {size} | {_num(n)} |" for size, n in stats["duplicate_clusters_per_size"].items()]
        lines += ["", f"![Duplicates per cluster size]({PLOTS_DIR}/{plots['duplicates_per_cluster_size'].name})"]
    else:
        lines.append("No duplicate clusters were reported.")
    lines += ["", "## Unhandled constructs", ""]
    if stats.get("unhandled_constructs"):
        lines += ["What the converters met and could not render faithfully (catalog table `losses`).", "",
                  "| kind | name | documents | occurrences |", "|---|---|---:|---:|"]
        lines += [f"| {u['kind']} | `{u['name']}` | {_num(u['documents'])} | {_num(u['occurrences'])} |"
                  for u in stats["unhandled_constructs"]]
    else:
        lines.append("No unhandled construct was recorded.")
    known = {"documents", "tokens", "words", "characters", "documents_without_token_count", "per_source",
             "token_length_histogram", "dropped_by_filters", "drops_per_filter", "duplicate_clusters_per_size",
             "duplicates_removed", "unhandled_constructs"}
    other = {k: v for k, v in stats.items() if k not in known}
    if other:
        lines += ["", "## Other", "", "```json", json.dumps(other, indent=2, sort_keys=True, default=str), "```"]
    return "\n".join(lines) + "\n"


def without_local_paths(value: Any) -> Any:
    """`value` with every absolute local path (benchmark files, tokenizer folders in the recipe) cut to its
    file name: stats.json is published with the dataset and must not reveal the builder's file system."""
    if isinstance(value, Mapping):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str | Path) and (str(value).startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", str(value))):
        return re.split(r"[\\/]", str(value).rstrip("/\\"))[-1]
    return value


def write_report(out_dir: str | Path, stats: Mapping[str, Any]) -> dict[str, Path]:
    """Write `stats.json`, `stats.md` and the plots into `out_dir`; returns their paths.
    Absolute local paths are cut to file names first (`without_local_paths`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = without_local_paths(stats)
    paths = {"json": write_stats(out, dict(stats))}
    plots = write_plots(out, stats)
    md = out / "stats.md"
    md.write_text(render_markdown(stats, plots))
    return {**paths, "markdown": md, **plots}
