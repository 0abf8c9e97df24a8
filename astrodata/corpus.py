"""`build-corpus`: compose the stages into one resumable, parallel corpus build.

Two phases, so the per-document work can be split across processes or cluster tasks:

1. **extract** (per document, parallel, resumable): e-print -> unpack -> flatten -> LaTeX to
   text. Rows go to `WORKDIR/extracted/` shards; each document's outcome goes to the catalog.
   With `--shard K/N` this phase sees only the documents whose stable hash falls in shard K,
   in its own workspace `WORKDIR/shards/K-of-N/` (DuckDB allows one writer per file).
2. **finalize** (one process): gather every extracted shard (and shard catalogs), then write the
   output dataset afresh: `OUT/data/*.parquet`, `OUT/stats.json`.

Resume rule: a document is done when its id is in a finished extracted shard, or the catalog
records it as failed. Rows are marked done only after their shard is on disk, and the shards
themselves are the source of truth, so a SIGKILL at any point neither loses nor duplicates.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pebble import ProcessPool
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from astrodata.shards import CORPUS_SCHEMA, ShardWriter, existing_ids, read_rows, shard_files, write_stats
from astrodata.workspace import Run, Workspace

EXTRACT_STAGE = "extract"
BULK_PREFIX = "arXiv_src_"


@dataclass
class CorpusOptions:
    """What one build-corpus invocation was asked to do."""

    out: Path
    eprints: list[Path] = field(default_factory=list)  # folders of e-prints or arXiv bulk source tars
    workers: int = max(1, (os.cpu_count() or 1))
    timeout_s: float = 120.0  # per-document wall-clock limit
    limit: int | None = None
    shard: tuple[int, int] | None = None  # (K, N), K in 1..N
    bbl: str = "inline"
    citations: str = "marker"
    flush_every: int = 200  # rows per extracted shard: the resume granularity
    from_catalog: bool = False  # download the e-prints of every harvested paper first
    eprint_url: str = "https://arxiv.org/e-print/"
    download_delay_s: float = 3.0  # arXiv's politeness delay between e-print requests
    progress: bool = True


@dataclass
class Task:
    """One document to extract: where its bytes are and how to call it."""

    doc_id: str
    source: str
    source_id: str
    path: Path | None = None
    data: bytes | None = None


def parse_shard(spec: str) -> tuple[int, int]:
    """`"2/8"` -> (2, 8), with a clear error for anything else."""
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 2/8), got {spec!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {spec!r}")
    return k, n


def in_shard(doc_id: str, shard: tuple[int, int] | None) -> bool:
    """Stable assignment of documents to shards (same answer on every machine and run)."""
    if shard is None:
        return True
    k, n = shard
    h = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")
    return h % n == k - 1


def shard_workspace(workdir: Path, shard: tuple[int, int] | None) -> Path:
    return workdir if shard is None else workdir / "shards" / f"{shard[0]}-of-{shard[1]}"


# -- discovery -------------------------------------------------------------------------------
def arxiv_tasks(inputs: list[Path]) -> Iterator[Task]:
    """Every e-print under the given folders; arXiv bulk tars are opened member by member."""
    from astrodata.sources.eprints import iter_bulk_tar, iter_local_eprints

    for item in inputs:
        if not item.exists():
            raise FileNotFoundError(f"e-prints folder not found: {item}")
        bulk = [item] if item.is_file() else sorted(item.glob(f"{BULK_PREFIX}*.tar"))
        for tar_path in bulk:
            for eprint_id, data in iter_bulk_tar(tar_path):
                yield Task(f"arxiv:{eprint_id}", "arxiv", eprint_id, data=data)
        if item.is_dir():
            for eprint_id, path in iter_local_eprints(item):
                if not path.name.startswith(BULK_PREFIX):
                    yield Task(f"arxiv:{eprint_id}", "arxiv", eprint_id, path=path)


def download_harvested(ws: Workspace, opts: CorpusOptions, run: Run) -> Path:
    """Fetch the latest-version e-print of each harvested paper (this shard's) into the workspace."""
    from astrodata.sources.eprints import download_eprints

    rows = ws.con.execute(
        "SELECT arxiv_id || coalesce('v' || latest_version, '') FROM papers ORDER BY arxiv_id").fetchall()
    ids = [r[0] for r in rows if in_shard(f"arxiv:{r[0]}", opts.shard)][: opts.limit]
    dest = ws.path("eprints")
    results = download_eprints(ids, dest, base_url=opts.eprint_url, delay_s=opts.download_delay_s)
    for d in results:
        if d.status == "failed":
            ws.upsert_document(f"arxiv:{d.eprint_id}", source="arxiv", source_id=d.eprint_id, stage=EXTRACT_STAGE,
                               status="error", run_id=run.run_id, error=f"download: {d.detail}")
            run.error(f"arxiv:{d.eprint_id}", "download", "download-failed", d.detail)
    run.counts["downloads"] = {s: sum(d.status == s for d in results) for s in ("downloaded", "exists", "failed")}
    return dest


# -- the per-document worker (runs in a child process) ---------------------------------------
def extract_arxiv(task: Task, bbl: str, citations: str) -> dict[str, Any]:
    """Unpack, flatten and convert one e-print; never raises: failures come back as data."""
    from astrodata.latex.flatten import flatten
    from astrodata.latex.to_text import TextOptions, latex_to_text
    from astrodata.sources.eprints import EprintError, unpack_eprint

    start = time.perf_counter()
    stage = "unpack"
    try:
        eprint = unpack_eprint(task.data if task.data is not None else task.path, task.source_id)
        stage = "flatten"
        flat = flatten(eprint, bbl=bbl)
        stage = "latex"
        # Macros defined in the e-print's own .sty files count as user macros too.
        doc = latex_to_text(flat.text, TextOptions(citations=citations), preamble="\n".join(flat.packages.values()))
        if not doc.text.strip() or doc.words == 0:
            raise ValueError("conversion produced no text")
    except EprintError as exc:
        return {"ok": False, "stage": stage, "reason": exc.reason, "detail": str(exc),
                "seconds": time.perf_counter() - start}
    except Exception as exc:  # noqa: BLE001 - any per-document failure is recorded, the run goes on
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return {"ok": False, "stage": stage, "reason": reason, "detail": str(exc)[:500],
                "seconds": time.perf_counter() - start}
    encodings = set(eprint.encodings.values())
    return {
        "ok": True,
        "title": doc.title,
        "text": doc.text,
        "words": doc.words,
        "residue_per_1k": doc.residue_per_1k,
        "macros_expanded": doc.macros_expanded,
        "missing_inputs": list(flat.missing_inputs),
        "encoding": "latin-1" if "latin-1" in encodings else "utf-8",
        "main_file": flat.main_file,
        "kind": eprint.kind,
        "seconds": time.perf_counter() - start,
    }


# -- phase 1: extract ------------------------------------------------------------------------
def arxiv_row(ws: Workspace, task: Task, result: dict[str, Any]) -> dict[str, Any]:
    """A corpus row: catalog metadata (when harvested) wins over what the LaTeX says."""
    from astrodata.sources.arxiv_meta import paper_metadata

    meta = paper_metadata(ws, task.source_id) or {}
    return {
        "id": task.doc_id,
        "source": task.source,
        "source_id": task.source_id,
        "title": meta.get("title") or result["title"] or task.source_id,
        "text": result["text"],
        "n_tokens": None,
        "license": meta.get("license") or "unknown",
        "url": meta.get("url") or "",
        "date": meta.get("date") or "",
    }


def extract(ws: Workspace, opts: CorpusOptions, run: Run) -> None:
    """Phase 1 over arXiv e-prints, parallel with a per-document wall-clock limit."""
    out_dir = ws.path("extracted")
    failed_before = ws.con.execute(
        "SELECT doc_id FROM documents WHERE stage = ? AND status <> 'done'", [EXTRACT_STAGE]).fetchall()
    done = {r[0] for r in failed_before}
    for folder in extracted_folders(ws):
        done |= existing_ids(folder)
    tasks = [t for t in arxiv_tasks(opts.eprints) if in_shard(t.doc_id, opts.shard)]
    if opts.limit is not None:
        tasks = tasks[: opts.limit]
    todo = [t for t in tasks if t.doc_id not in done]
    run.counts.update(seen=len(tasks), skipped_already_done=len(tasks) - len(todo), extracted=0, failed=0)

    writer = ShardWriter(out_dir, CORPUS_SCHEMA, rows_per_shard=opts.flush_every)
    pending: dict[str, dict[str, Any]] = {}  # doc_id -> catalog fields, written once the shard is on disk

    def mark_flushed(ids: list[str]) -> None:
        for doc_id in ids:
            ws.upsert_document(doc_id, **pending.pop(doc_id))

    with _progress(opts.progress) as progress, ProcessPool(max_workers=opts.workers, max_tasks=50) as pool:
        bar = progress.add_task("extract", total=len(todo))
        futures = [(t, pool.schedule(extract_arxiv, args=(t, opts.bbl, opts.citations), timeout=opts.timeout_s))
                   for t in todo]
        for task, future in futures:
            try:
                result = future.result()
            except FutureTimeout:
                result = {"ok": False, "stage": "latex", "reason": "timeout",
                          "detail": f"over the {opts.timeout_s:g} s per-document limit", "seconds": opts.timeout_s}
            except Exception as exc:  # noqa: BLE001 - a crashed worker (e.g. killed for memory) is a per-doc error
                result = {"ok": False, "stage": "worker", "reason": type(exc).__name__, "detail": str(exc)[:500],
                          "seconds": None}
            fields = {"source": task.source, "source_id": task.source_id, "stage": EXTRACT_STAGE,
                      "run_id": run.run_id, "seconds": result.get("seconds")}
            if result["ok"]:
                fields.update(status="done", words=result["words"], residue_per_1k=result["residue_per_1k"],
                              macros_expanded=result["macros_expanded"], missing_inputs=result["missing_inputs"],
                              encoding=result["encoding"],
                              details={"main_file": result["main_file"], "kind": result["kind"]})
                pending[task.doc_id] = fields
                run.counts["extracted"] += 1
                mark_flushed(writer.add(arxiv_row(ws, task, result)))
            else:
                ws.upsert_document(task.doc_id, status="error", error=f"{result['stage']}: {result['reason']}",
                                   details={"detail": result["detail"]}, **fields)
                run.error(task.doc_id, result["stage"], result["reason"], result["detail"])
                run.counts["failed"] += 1
            progress.advance(bar)
        mark_flushed(writer.flush())


def extracted_folders(ws: Workspace) -> list[Path]:
    """This workspace's extracted shards plus those of `--shard K/N` runs beneath it."""
    return [ws.path("extracted"), *sorted((ws.root / "shards").glob("*-of-*/extracted"))]


def merge_shard_catalogs(ws: Workspace) -> int:
    """Fold the catalogs of `--shard K/N` runs into this one (idempotent); returns how many."""
    catalogs = sorted((ws.root / "shards").glob("*-of-*/catalog.duckdb"))
    for i, path in enumerate(catalogs):
        alias = f"shard{i}"
        ws.con.execute(f"ATTACH '{path}' AS {alias} (READ_ONLY)")
        try:
            ws.con.execute(f"INSERT OR REPLACE INTO documents SELECT * FROM {alias}.documents")
            ws.con.execute(f"INSERT OR IGNORE INTO runs SELECT * FROM {alias}.runs")
            ws.con.execute(
                f"INSERT INTO errors SELECT * FROM {alias}.errors e WHERE NOT EXISTS (SELECT 1 FROM errors x "
                "WHERE x.run_id IS NOT DISTINCT FROM e.run_id AND x.doc_id IS NOT DISTINCT FROM e.doc_id "
                "AND x.stage = e.stage AND x.reason = e.reason)")
        finally:
            ws.con.execute(f"DETACH {alias}")
    return len(catalogs)


# -- phase 2: finalize -----------------------------------------------------------------------
def finalize(ws: Workspace, opts: CorpusOptions) -> dict[str, Any]:
    """Write the output dataset afresh from every extracted shard, then its stats."""
    sources = extracted_folders(ws)
    tmp = opts.out.with_name(opts.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    seen: set[str] = set()
    counts: dict[str, int] = {}
    with ShardWriter(tmp, CORPUS_SCHEMA, rows_per_shard=10_000, prefix="train") as writer:
        for src in sources:
            for row in read_rows(src):
                if row["id"] in seen:  # the same document extracted by two shard runs
                    continue
                seen.add(row["id"])
                counts[row["source"]] = counts.get(row["source"], 0) + 1
                writer.add(row)
    stats = {"documents": len(seen), "documents_per_source": counts,
             "shards": len(shard_files(tmp))}
    write_stats(tmp, stats)
    if opts.out.exists():
        shutil.rmtree(opts.out / "data", ignore_errors=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    for item in tmp.iterdir():
        os.replace(item, opts.out / item.name)
    tmp.rmdir()
    return stats


# -- entry -----------------------------------------------------------------------------------
def build_corpus(workdir: Path, opts: CorpusOptions) -> dict[str, Any]:
    """Run phase 1 (this shard, or everything) and, when not sharded, phase 2."""
    ws = Workspace(shard_workspace(Path(workdir), opts.shard))
    try:
        with ws.run("build-corpus", {k: str(v) for k, v in vars(opts).items()}) as run:
            if opts.shard is None:
                run.counts["shard_catalogs_merged"] = merge_shard_catalogs(ws)
            if opts.from_catalog:
                opts.eprints = [*opts.eprints, download_harvested(ws, opts, run)]
            extract(ws, opts, run)
            if opts.shard is None:
                run.counts["output"] = finalize(ws, opts)
            summary = dict(run.counts)
        return summary
    finally:
        ws.close()


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)
