"""The run summary: one row per stage (what it did and why, seconds, outputs, key figures), as a
terminal table (rich) and as `report.md` / `report.html` in the run folder. `steps` are
`astrodata.run.pipeline.Step`s (not imported: the pipeline imports this module)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from astrodata.run.stages import Context

COLUMNS = ("stage", "action", "why", "seconds", "outputs", "key figures")


def _figures(figures: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
                     for k, v in figures.items())


def rows(ctx: Context, steps: list[Any]) -> list[tuple[str, ...]]:
    """Table rows: stage, what happened (or would), why, seconds, outputs (relative), key figures."""
    out = []
    for s in steps:
        paths = sorted({_relative(Path(o["path"]), ctx.root) for o in s.outputs.values()})
        out.append((s.stage.name, s.outcome or s.action, s.reason,
                    "" if s.seconds is None else f"{s.seconds:.1f}", ", ".join(paths), _figures(s.figures)))
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def table(ctx: Context, steps: list[Any], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in COLUMNS:
        t.add_column(c, overflow="fold")
    for r in rows(ctx, steps):
        t.add_row(*r)
    return t


def render_markdown(ctx: Context, steps: list[Any]) -> str:
    total = sum(s.seconds or 0 for s in steps)
    lines = [f"# astrodata run {ctx.run_id}", "",
             f"Run folder `{ctx.root}`; {sum(s.outcome in ('ran', 'resumed') for s in steps)} stage(s) ran in "
             f"{total:.1f} s; the record of every stage is in `catalog.duckdb` (table `stage_runs`). "
             "Up-to-date stages show the outputs and figures of the run that made them.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows(ctx, steps)]
    report = ctx.path("eval-report", "report.md")
    if report.is_file():
        lines += ["", "Benchmark report: [eval-report/report.md](eval-report/report.md)."]
    return "\n".join(lines) + "\n"


def render_html(markdown: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    style = ("body{font-family:system-ui,sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}"
             "th{background:#f3f3f3}")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}</body></html>\n")


def write_report(ctx: Context, steps: list[Any]) -> dict[str, Path]:
    """Write `report.md` and `report.html` in the run folder; returns their paths."""
    markdown = render_markdown(ctx, steps)
    md, page = ctx.path("report.md"), ctx.path("report.html")
    md.write_text(markdown, encoding="utf-8")
    page.write_text(render_html(markdown, f"astrodata run {ctx.run_id}"), encoding="utf-8")
    return {"md": md, "html": page}
