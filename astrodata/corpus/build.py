"""`build-corpus`: compose the stages into one resumable, parallel corpus build.

Two phases, so the per-document work can be split across processes or cluster tasks:

1. **extract** (per document, parallel, resumable), a chain of generator blocks in the manner of
   datatrove: sources (arXiv e-prints -> unpack -> flatten -> LaTeX to text in a process pool;
   Wikipedia; local documents) -> quality filters -> decontamination -> token counts ->
   `WORKDIR/extracted/` shards, then the MinHash signatures of those rows. Each document's
   outcome (done, dropped by which filter, error with a reason) goes to the catalog. With
   `--shard K/N` this phase sees only the documents whose stable hash falls in shard K, in its
   own workspace `WORKDIR/shards/K-of-N/` (DuckDB allows one writer per file).
2. **finalize** (one process): fold in the shard catalogs, deduplicate over every shard's
   signatures in DuckDB (arXiv versions, exact, MinHash-LSH), then write the output dataset
   afresh: `OUT/data/*.parquet`, `OUT/stats.json`, `OUT/stats.md` and its plots.

Resume rule: a document is done when its id is in a finished extracted shard, or the catalog
records it as failed. Rows are marked done only after their shard is on disk, and the shards
themselves are the source of truth, so a SIGKILL at any point neither loses nor duplicates.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pebble import ProcessPool
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from astrodata.core.progress import RunProgress
from astrodata.core.shards import CORPUS_SCHEMA, ShardWriter, existing_ids, read_rows, shard_files
from astrodata.core.workspace import Run, Workspace
from astrodata.corpus.recipe import Recipe, load_recipe

EXTRACT_STAGE = "extract"
BULK_PREFIX = "arXiv_src_"


@dataclass
class CorpusOptions:
    """What one build-corpus invocation was asked to do."""

    out: Path
    eprints: list[Path] = field(default_factory=list)  # folders of e-prints or arXiv bulk source tars
    wikipedia: list[str] = field(default_factory=list)  # pages-articles XML dumps, Parquet paths or Hub ids
    categorylinks: Path | None = None  # page,category CSV for the category-graph selection
    docs: list[Path] = field(default_factory=list)  # folders of textbooks and other local documents
    license: str | None = None  # required with docs: stored on every local document
    recipe: Path | None = None  # YAML overriding astrodata/recipes/corpus.yaml
    benchmarks: list[Path] = field(default_factory=list)  # question files to decontaminate against
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


class Extraction:
    """Phase 1 state: which documents are done, the shard writer, and catalog fields waiting
    for their row's shard to reach the disk (a row is only `done` once it is in a shard)."""

    def __init__(self, ws: Workspace, opts: CorpusOptions, run: Run, progress: RunProgress):
        self.ws, self.opts, self.run, self.progress = ws, opts, run, progress
        not_done = ws.con.execute(
            "SELECT doc_id FROM documents WHERE stage = ? AND status <> 'done'", [EXTRACT_STAGE]).fetchall()
        self.done = {r[0] for r in not_done}
        for folder in extracted_folders(ws):
            self.done |= existing_ids(folder)
        self.pending: dict[str, dict[str, Any]] = {}
        self.writer = ShardWriter(ws.path("extracted"), CORPUS_SCHEMA, rows_per_shard=opts.flush_every)
        self.counts = run.counts.setdefault("extracted", {})

    def wanted(self, doc_id: str) -> bool:
        return doc_id not in self.done and in_shard(doc_id, self.opts.shard)

    def accept(self, row: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Remember the catalog fields of a converted document; returns the row for the next block."""
        self.pending[row["id"]] = {"source": row["source"], "source_id": row["source_id"], "stage": EXTRACT_STAGE,
                                   "run_id": self.run.run_id, "words": len(row["text"].split()), **fields}
        return row

    def fail(self, doc_id: str, source: str, source_id: str, stage: str, reason: str, detail: str,
             status: str = "error", **fields: Any) -> None:
        """Record a document that will not reach the output, with its reason."""
        self.pending.pop(doc_id, None)
        self.ws.upsert_document(doc_id, source=source, source_id=source_id, stage=EXTRACT_STAGE, status=status,
                                run_id=self.run.run_id, error=f"{stage}: {reason}", **fields)
        if status == "error":
            self.run.error(doc_id, stage, reason, detail)
        key = "failed" if status == "error" else "dropped"
        self.run.counts[key] = self.run.counts.get(key, 0) + 1

    def write(self, row: dict[str, Any]) -> None:
        self.mark_flushed(self.writer.add(row))
        self.counts[row["source"]] = self.counts.get(row["source"], 0) + 1

    def mark_flushed(self, ids: list[str]) -> None:
        for doc_id in ids:
            self.ws.upsert_document(doc_id, status="done", **self.pending.pop(doc_id))

    # -- sources: each yields converted rows and records its own failures --------------------
    def arxiv(self) -> Iterator[dict[str, Any]]:
        """E-prints through a process pool, each with a wall-clock limit (pebble kills overruns)."""
        opts = self.opts
        tasks = [t for t in arxiv_tasks(opts.eprints) if in_shard(t.doc_id, opts.shard)][: opts.limit]
        todo = [t for t in tasks if t.doc_id not in self.done]
        self.run.counts["skipped_already_done"] = self.run.counts.get("skipped_already_done", 0) + len(tasks) - len(todo)
        self.run.counts["seen"] = self.run.counts.get("seen", 0) + len(tasks)
        if not todo:
            return
        bar, failed = self.progress.add_task("arxiv", total=len(todo), failures=0), 0
        # Workers are spawned, not forked: the parent runs tokenizers (Rust threads) while the
        # pool recycles workers, and a fork taken mid-thread can crash or deadlock the child.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPool(max_workers=opts.workers, max_tasks=200, context=spawn) as pool:
            futures = [(t, pool.schedule(extract_arxiv, args=(t, opts.bbl, opts.citations), timeout=opts.timeout_s))
                       for t in todo]
            for task, future in futures:
                try:
                    result = future.result()
                except FutureTimeout:
                    result = {"ok": False, "stage": "latex", "reason": "timeout",
                              "detail": f"over the {opts.timeout_s:g} s per-document limit", "seconds": opts.timeout_s}
                except Exception as exc:  # noqa: BLE001 - a crashed worker (e.g. OOM-killed) is a per-doc error
                    result = {"ok": False, "stage": "worker", "reason": type(exc).__name__,
                              "detail": str(exc)[:500], "seconds": None}
                self.progress.advance(bar)
                if not result["ok"]:
                    failed += 1
                    self.progress.update(bar, failures=failed)
                    self.fail(task.doc_id, task.source, task.source_id, result["stage"], result["reason"],
                              result["detail"], seconds=result["seconds"], details={"detail": result["detail"]})
                    continue
                yield self.accept(
                    arxiv_row(self.ws, task, result), seconds=result["seconds"],
                    residue_per_1k=result["residue_per_1k"], macros_expanded=result["macros_expanded"],
                    missing_inputs=result["missing_inputs"], encoding=result["encoding"],
                    details={"main_file": result["main_file"], "kind": result["kind"]})

    def wikipedia(self, source: str, settings: Any) -> Iterator[dict[str, Any]]:
        """Astronomy pages of a dump or Parquet dataset; every selection decision is logged."""
        from astrodata.sources.wikipedia import iter_wikipedia_documents

        log_path = self.ws.path("logs", "wikipedia-selection.jsonl")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        actions: dict[str, int] = {}
        reasons: dict[str, str] = {}
        bar = self.progress.add_task("wikipedia", total=None)
        with log_path.open("a") as log:
            def decided(d: Any) -> None:
                actions[d.action] = actions.get(d.action, 0) + 1
                reasons[f"wikipedia:{d.page_id}"] = d.reason
                log.write(json.dumps({"page_id": d.page_id, "title": d.title, "action": d.action,
                                      "reason": d.reason, "score": d.score}) + "\n")
                self.progress.advance(bar)

            docs = iter_wikipedia_documents(source, settings, on_decision=decided,
                                            categorylinks=self.opts.categorylinks, select_ids=self.wanted)
            for n, row in enumerate(docs):
                if self.opts.limit is not None and n >= self.opts.limit:
                    break
                yield self.accept(row, details={"selection": reasons.pop(row["id"], "")})
        self.run.counts["wikipedia_selection"] = actions

    def local_docs(self, folder: Path, settings: Any) -> Iterator[dict[str, Any]]:
        """Textbooks and other local files, one document per file or chapter."""
        from astrodata.textbooks.local_docs import iter_local_documents

        def unreadable(rel: str, reason: str) -> None:
            doc_id = f"{settings.source}:{rel}"
            self.fail(doc_id, settings.source, rel, "read", "unreadable", reason, details={"detail": reason})

        n = 0
        for row in iter_local_documents(folder, self.opts.license, settings, on_error=unreadable):
            if self.wanted(row["id"]) and (self.opts.limit is None or n < self.opts.limit):
                n += 1
                yield self.accept(row)

    # -- per-document blocks applied to every source ------------------------------------------
    def filtered(self, rows: Iterator[dict[str, Any]], recipe: Recipe) -> Iterator[dict[str, Any]]:
        from astrodata.corpus.filters import apply_filters

        def dropped(row: dict[str, Any], drop: Any) -> None:
            fields = self.pending.get(row["id"], {})
            self.fail(row["id"], row["source"], row["source_id"], "filter", drop.filter,
                      f"{drop.filter} = {drop.value:.4g} (rule {drop.rule})", status="dropped",
                      words=fields.get("words"), details=drop.details())

        return apply_filters(rows, recipe.filters, on_drop=dropped)

    def decontaminated(self, rows: Iterator[dict[str, Any]], recipe: Recipe) -> Iterator[dict[str, Any]]:
        from astrodata.corpus.decontam import Decontaminator

        s = recipe.decontam
        checker = Decontaminator.from_files(s.benchmarks, mode=s.mode, n=s.ngram, min_words=s.min_words)
        for row in rows:
            hits = checker.matches(row["text"])
            kept = checker.apply(row) if hits else row
            if kept is None:
                self.fail(row["id"], row["source"], row["source_id"], "decontam", "benchmark-overlap",
                          f"{s.ngram}-gram overlap with {sorted(hits)}", status="dropped",
                          details={"filter": "decontamination", "benchmarks": hits})
                continue
            if hits:
                self.pending[row["id"]]["details"] = {**(self.pending[row["id"]].get("details") or {}),
                                                      "redacted_for": hits}
            yield kept
        self.run.counts["decontam"] = {"mode": s.mode, "per_benchmark": dict(checker.stats.per_benchmark),
                                       "dropped": checker.stats.dropped, "redacted": checker.stats.redacted}


def extract(ws: Workspace, opts: CorpusOptions, recipe: Recipe, run: Run) -> None:
    """Phase 1: every source -> filters -> decontamination -> token counts -> extracted shards,
    then this workspace's MinHash signatures for phase 2."""
    from astrodata.corpus.dedup import compute_signatures
    from astrodata.corpus.tokens import add_token_counts

    with _progress(opts.progress, run) as progress:
        ex = Extraction(ws, opts, run, progress)
        rows: Iterator[dict[str, Any]] = itertools.chain(
            ex.arxiv(),
            *(ex.wikipedia(src, recipe.wikipedia) for src in opts.wikipedia),
            *(ex.local_docs(folder, recipe.local_docs) for folder in opts.docs),
        )
        rows = ex.filtered(rows, recipe)
        if recipe.decontam.benchmarks:
            rows = ex.decontaminated(rows, recipe)
        for row in add_token_counts(rows, recipe.tokenizer.name, recipe.tokenizer.batch_size):
            ex.pending[row["id"]]["n_tokens"] = row["n_tokens"]
            ex.write(row)
        ex.mark_flushed(ex.writer.flush())
    files = shard_files(ws.path("extracted"))
    sig_path = ws.path("signatures", "extracted.parquet")
    if files:
        stats = compute_signatures(read_rows(ws.path("extracted")), sig_path, minhash_params(recipe))
        run.counts["signatures"] = {"documents": stats.docs, "seconds": round(stats.seconds, 3)}


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


def minhash_params(recipe: Recipe) -> Any:
    from astrodata.corpus.dedup import MinHashParams

    d = recipe.dedup
    return MinHashParams(ngram=d.ngram, bands=d.bands, rows=d.rows, threshold=d.threshold, seed=d.seed,
                         max_bucket=d.max_bucket)


# -- phase 2: finalize -----------------------------------------------------------------------
def finalize(ws: Workspace, opts: CorpusOptions, recipe: Recipe, run: Run) -> dict[str, Any]:
    """Deduplicate across every extracted shard, then write the output dataset afresh + its stats."""
    from astrodata.corpus.dedup import ExactJaccard, deduplicate, dropped_ids
    from astrodata.corpus.stats import corpus_stats, write_report

    folders = extracted_folders(ws)
    files = [f for folder in folders for f in shard_files(folder)]
    signatures = [p for p in (ws.root / "signatures", *sorted((ws.root / "shards").glob("*-of-*/signatures")))
                  if p.exists() and any(p.glob("*.parquet"))]
    dedup = None
    if files and signatures:
        params = minhash_params(recipe)
        exact = ExactJaccard.from_parquet(files, ngram=params.ngram) if recipe.dedup.check == "exact" else None
        dedup = deduplicate(ws.con, signatures, params, jaccard=exact, run_id=run.run_id)
        ws.con.execute("""
            UPDATE documents SET status = 'dropped', error = 'dedup: ' || c.reason,
                   details = json_object('filter', 'dedup', 'reason', c.reason, 'kept_doc_id', c.kept_doc_id)
            FROM dedup_clusters c WHERE documents.doc_id = c.doc_id AND NOT c.kept""")
    drop = dropped_ids(ws.con) if dedup else set()

    tmp = opts.out.with_name(opts.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    seen: set[str] = set()
    with ShardWriter(tmp, CORPUS_SCHEMA, rows_per_shard=10_000, prefix="train") as writer:
        for folder in folders:
            for row in read_rows(folder):
                if row["id"] in seen or row["id"] in drop:
                    continue
                seen.add(row["id"])
                writer.add(row)
    drops = [{"filter": f} for (f,) in ws.con.execute(
        "SELECT coalesce(json_extract_string(details, '$.filter'), 'unknown') FROM documents "
        "WHERE stage = ? AND status = 'dropped'", [EXTRACT_STAGE]).fetchall()]
    errors = dict(ws.con.execute("SELECT reason, count(*) FROM errors GROUP BY reason ORDER BY 2 DESC").fetchall())
    stats = corpus_stats(read_rows(tmp), drops, dedup.cluster_sizes if dedup else None,
                         extra={"errors_per_reason": errors, "dedup": dedup.as_dict() if dedup else None,
                                "recipe": recipe.model_dump(mode="json")})
    write_report(tmp, stats)
    opts.out.mkdir(parents=True, exist_ok=True)
    for name in ("data", "plots"):
        shutil.rmtree(opts.out / name, ignore_errors=True)
    for item in tmp.iterdir():
        os.replace(item, opts.out / item.name)
    tmp.rmdir()
    return {"documents": stats["documents"], "tokens": stats["tokens"], "duplicates_removed": len(drop)}


# -- entry -----------------------------------------------------------------------------------
def build_corpus(workdir: Path, opts: CorpusOptions) -> dict[str, Any]:
    """Run phase 1 (this shard, or everything) and, when not sharded, phase 2.

    The e-print workers are spawned processes, so a script calling this needs the usual
    `if __name__ == "__main__":` guard (notebooks and the CLI need nothing)."""
    recipe = load_recipe(opts.recipe)
    if opts.benchmarks:
        recipe.decontam.benchmarks = [*recipe.decontam.benchmarks, *map(str, opts.benchmarks)]
    if opts.docs and not (opts.license or "").strip():
        raise ValueError("--docs needs --license (stored on every document), e.g. --license CC-BY-4.0")
    ws = Workspace(shard_workspace(Path(workdir), opts.shard))
    try:
        config = {k: str(v) for k, v in vars(opts).items()} | {"recipe": recipe.model_dump(mode="json")}
        with ws.run("build-corpus", config) as run:
            run.counts.update(seen=0, skipped_already_done=0, failed=0, dropped=0)
            if opts.shard is None:
                run.counts["shard_catalogs_merged"] = merge_shard_catalogs(ws)
            if opts.from_catalog:
                opts.eprints = [*opts.eprints, download_harvested(ws, opts, run)]
            extract(ws, opts, recipe, run)
            if opts.shard is None:
                run.counts["output"] = finalize(ws, opts, recipe, run)
            summary = dict(run.counts)
        return summary
    finally:
        ws.close()


def _progress(enabled: bool, run: Run) -> RunProgress:
    return RunProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       enabled=enabled, run=run)
