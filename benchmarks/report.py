"""Benchmark reports: our runs beside published AstroMLab-1 scores, as Markdown, HTML and a plot.

The plot is the AstroSage model card's score-versus-cost figure: AstroMLab-1 score against cost
per 0.1M tokens on a symmetric-log axis (0, a free local model, included). Published models whose
cost we could not source, and runs given no `--cost LABEL=USD`, are drawn as horizontal score lines.
General-benchmark results (`eval-general`, or an lm-eval results file) become a second table.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from .general import fold_lm_eval

PUBLISHED = Path(__file__).parent / "published_scores.yaml"


def parse_costs(items: list[str]) -> dict[str, float]:
    """`LABEL=USD` pairs (USD per 0.1M tokens) from the command line."""
    costs = {}
    for item in items:
        label, sep, value = item.rpartition("=")
        label = label.strip()
        try:
            cost = float(value)
        except ValueError:
            cost = None
        if not sep or not label or cost is None or cost < 0 or cost != cost:
            raise ValueError(f"--cost {item!r}: expected LABEL=USD with a number >= 0 (0: free, e.g. a local "
                             f"model), e.g. GPT-4o=0.75")
        costs[label] = cost
    return costs


def load_result(path: Path) -> dict[str, Any]:
    """An AstroMLab-1 results.json, a general_results.json, or lm-eval's own results file (folded)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: results file does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON results file ({exc.msg})") from exc
    if data.get("benchmark") in ("AstroMLab-1", "general"):
        return data
    if "results" in data and ("lm_eval_version" in data or "config" in data):
        return fold_lm_eval(data)
    raise ValueError(f"{path}: neither an astrodata results.json nor an lm-eval results file")


def run_label(run: dict[str, Any]) -> str:
    return f"{run['model']} ({run['method']})"


def _cost(costs: dict[str, float], *labels: str) -> float | None:
    return next((costs[label] for label in labels if label in costs), None)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def build_report(results: list[str | Path], out_dir: str | Path, *, costs: dict[str, float] | None = None,
                 published_path: str | Path | None = None) -> dict[str, Path]:
    """Write report.md, report.html, score_vs_cost.png and .svg; return their paths."""
    costs = costs or {}
    loaded = [load_result(Path(p)) for p in results]
    runs = [r for r in loaded if r["benchmark"] == "AstroMLab-1"]
    general = [r for r in loaded if r["benchmark"] == "general"]
    published = yaml.safe_load(Path(published_path or PUBLISHED).read_text(encoding="utf-8"))
    entries = []
    for p in published.get("astromlab1", []):
        cost = _cost(costs, p["model"])
        entries.append({"label": p["model"], "kind": "published", "score": p["score"],
                        "cost": cost if cost is not None else p.get("cost_per_100k_tokens_usd"),
                        "open_weights": p.get("open_weights"), "source": p["source"] + ("" if p.get("verified") else
                                                                                            " (not verified)")})
    for r in runs:
        entries.append({"label": run_label(r), "kind": "ours", "run": r,
                        "score": None if r["accuracy"] is None else 100 * r["accuracy"],
                        "cost": _cost(costs, run_label(r), r["model"]), "open_weights": None,
                        "source": f"{r['data']} ({r['n_questions']} questions)"})

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_score_vs_cost(entries, out)
    markdown = render_markdown(entries, runs, general)
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(markdown, encoding="utf-8")
    paths["html"] = out / "report.html"
    paths["html"].write_text(render_html(markdown), encoding="utf-8")
    return paths


def render_markdown(entries: list[dict[str, Any]], runs: list[dict[str, Any]],
                    general: list[dict[str, Any]]) -> str:
    lines = [
        "# AstroMLab-1 benchmark report", "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by astrodata {version('astrodata')}. Published "
        "scores are on the full 4,425-question keyed set; a run on another question set (or a subset) "
        "is not directly comparable with them.", "",
        "## Scores", "",
        "| Model | Kind | Score (%) | 95% CI | Questions | Cost / 0.1M tokens (USD) | Source |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    ranked = sorted(entries, key=lambda e: -(e["score"] if e["score"] is not None else -1))
    for e in ranked:
        run = e.get("run")
        ci = f"{_pct(run['ci95'][0])}-{_pct(run['ci95'][1])}" if run and run.get("ci95") else ""
        name = f"**{e['label']}**" if e["kind"] == "ours" else e["label"]
        score = "no key" if e["score"] is None else f"{e['score']:.1f}"
        cost = "unknown" if e["cost"] is None else f"{e['cost']:g}"
        lines.append(f"| {name} | {e['kind']} | {score} | {ci} | {run['n_questions'] if run else ''} | {cost} "
                     f"| {e['source']} |")
    if runs:
        lines += ["", "## Our runs", "",
                  "| Run | Backend | Dtype | Few-shot | Fallbacks | Unanswered | Questions/s | Prompt sha256 | "
                  "Data sha256 |", "|---|---|---|---:|---:|---:|---:|---|---|"]
        for r in runs:
            lines.append(f"| {run_label(r)} | {r.get('backend', '')} | {r.get('dtype', '')} | {r['few_shot']} "
                         f"| {r['fallbacks']} | {r['unanswered']} | {r['questions_per_s']} "
                         f"| `{r['prompt_hash'][:12]}` | `{r['data_hash'][:12]}` |")
        for key, title in (("by_difficulty", "difficulty"), ("by_topic", "topic")):
            groups = sorted({g for r in runs for g in r.get(key) or {}})
            if not groups:
                continue
            lines += ["", f"### Accuracy (%) by {title}", "", "| Run | " + " | ".join(groups) + " |",
                      "|---|" + "---:|" * len(groups)]
            for r in runs:
                cells = [f"{100 * r[key][g]['accuracy']:.1f} (n={r[key][g]['n']})" if g in (r.get(key) or {})
                         else "" for g in groups]
                lines.append(f"| {run_label(r)} | " + " | ".join(cells) + " |")
    if general:
        tasks = sorted({t for g in general for t in g["scores"]})
        lines += ["", "## General benchmarks (lm-evaluation-harness)", "",
                  "| Model | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for g in general:
            cells = [f"{g['scores'][t]['value']:.1f} ({g['scores'][t]['metric']})" if t in g["scores"] else ""
                     for t in tasks]
            lines.append(f"| {g['model']} | " + " | ".join(cells) + " |")
    lines += ["", "## Score versus cost", "", "![AstroMLab-1 score versus cost](score_vs_cost.svg)", "",
              "Models and runs without a known cost are drawn as dashed score lines; give costs with "
              "`astrodata report ... --cost LABEL=USD` (0 for a free local model).", ""]
    return "\n".join(lines)


def render_html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    style = ("body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem}"
             "th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape('AstroMLab-1 report')}"
            f"</title><style>{style}</style></head><body>\n{body}</body></html>\n")


def separate_labels(fig: Any, texts: list[Any], step_pt: float = 1.5, max_moves: int = 400) -> None:
    """Move matplotlib `Text`s down (in points, so it holds at any DPI) until no two bounding boxes
    overlap; texts are placed in the given order, each at its first free spot below where it was
    put. Hand-written because matplotlib has no label-placement solver (adjustText would be a
    dependency for this one use)."""
    from matplotlib.text import Annotation
    from matplotlib.transforms import ScaledTranslation

    renderer = fig.canvas.get_renderer()
    step = ScaledTranslation(0, -step_pt / 72, fig.dpi_scale_trans)
    placed: list[Any] = []
    for text in texts:
        if not text.get_window_extent(renderer).width:
            continue  # not drawn (an annotation of a point outside the axes)
        for _ in range(max_moves):
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            if isinstance(text, Annotation):  # placed by its offset (points) from the annotated point
                text.xyann = (text.xyann[0], text.xyann[1] - step_pt)
            else:
                text.set_transform(text.get_transform() + step)
        placed.append(text.get_window_extent(renderer))


def plot_score_vs_cost(entries: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """Score against cost per 0.1M tokens (symmetric-log x, so a free model at 0 has a place);
    models and runs without a cost are drawn as dashed score lines; no two labels overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    scored = [e for e in entries if e["score"] is not None]
    placed = [e for e in scored if e["cost"] is not None]
    fig, ax = plt.subplots(figsize=(9, 6))
    positive = [e["cost"] for e in placed if e["cost"] > 0]
    lo, hi = (min(positive), max(positive)) if positive else (1e-3, 10.0)
    ax.set_xscale("symlog", linthresh=lo / 5)  # linear below lo/5, so cost 0 sits at the left edge
    ax.set_xlim(0 if any(e["cost"] == 0 for e in placed) else lo / 5, hi * 5)
    scores = [e["score"] for e in scored] or [50.0]
    ax.set_ylim(max(0, min(scores) - 8), min(100, max(scores) + 5))
    edge = blended_transform_factory(ax.transAxes, ax.transData)
    # labels of close scores take turns at the right, left and middle of the axes so they stay legible
    last: dict[str, float] = {}
    spots = {"right": 0.995, "left": 0.005, "center": 0.5}
    lines = sorted((e for e in scored if e["cost"] is None), key=lambda e: -e["score"])
    labels = []
    for e in lines:
        ours = e["kind"] == "ours"
        ax.axhline(e["score"], color="tab:red" if ours else "0.6", lw=1.2 if ours else 0.8, ls="--", zorder=1)
        side = next((s for s in spots if s not in last or last[s] - e["score"] > 1.5), "right")
        last[side] = e["score"]
        labels.append(ax.text(spots[side], e["score"], f"{e['label']} {e['score']:.1f}" + (" (no --cost)" if ours else ""),
                              transform=edge, ha=side, va="bottom", fontsize=7,
                              color="tab:red" if ours else "0.35"))
    for e in sorted(placed, key=lambda e: -e["score"]):
        ours = e["kind"] == "ours"
        ax.scatter(e["cost"], e["score"], marker="*" if ours else "o", s=160 if ours else 60,
                   color="tab:red" if ours else "tab:blue", zorder=3,
                   edgecolors="black" if e.get("open_weights") else "none", linewidths=1.2)
        labels.append(ax.annotate(e["label"], (e["cost"], e["score"]), textcoords="offset points",
                                  xytext=(6, 4), fontsize=8))
    ax.set_xlabel("Cost per 0.1M tokens (USD, log scale)")
    ax.set_ylabel("AstroMLab-1 score (%)")
    ax.set_title("AstroMLab-1 score versus cost")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    separate_labels(fig, labels)
    paths = {"png": out / "score_vs_cost.png", "svg": out / "score_vs_cost.svg"}
    fig.savefig(paths["png"], dpi=150)
    fig.savefig(paths["svg"])
    plt.close(fig)
    return paths
