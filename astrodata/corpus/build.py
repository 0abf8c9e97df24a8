"""`build-corpus`: compose the stages into one resumable, parallel corpus build.

Two phases, so the per-document work can be split across processes or cluster tasks:

1. **extract** (per document, parallel, resumable): a list of steps of one shape
   (`astrodata.corpus.steps`, as datatrove's blocks): readers (arXiv e-prints -> unpack ->
   flatten -> LaTeX to text in a process pool; Wikipedia; local documents) -> quality filters ->
   decontamination -> token counts, into `WORKDIR/extracted/` shards, then the MinHash signatures
   of those rows. The steps report what they drop; the `Ledger` here keeps the bookkeeping: each
   document's outcome (done, dropped by which filter, error with a reason) goes to the catalog. With
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
import json
import os
import shutil
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from astrodata.core.config import Strict
from astrodata.core.control import (
    Interrupted,
    fault_point,
    interrupt_handling,
    is_interrupt,
    output_lock,
    require_utf8_path,
)
from astrodata.core.progress import RunProgress
from astrodata.core.shards import CORPUS_SCHEMA, ShardWriter, existing_ids, read_rows, shard_files
from astrodata.core.workspace import Run, Workspace
from astrodata.corpus.recipe import Recipe, load_recipe
from astrodata.corpus.steps import (
    ArxivReader,
    Decontaminate,
    Document,
    LocalDocsReader,
    LossCounter,
    QualityFilter,
    Rejection,
    Step,
    TokenCounter,
    WikipediaReader,
    in_shard,
    run_steps,
)

EXTRACT_STAGE = "extract"
_IDS = pa.schema([("doc_id", pa.string())])


MAX_WORKERS = 4 * (os.cpu_count() or 1)  # more processes than this only thrash memory
FLUSH_SECONDS = 60.0  # a shard is written at least this often: the most work a kill -9 loses
# Failures caused by the machine, not by the e-print: never final (a re-run tries them again).
RETRYABLE_STAGES = ("worker", "download")
RETRYABLE_REASONS = ("timeout", "MemoryError")


class CorpusOptions(Strict):
    """What one build-corpus invocation was asked to do (the CLI's flags set these fields).

    Every value is checked here, before any work: a bad one fails with `field: reason`."""

    out: Path
    eprints: list[Path] = []  # folders of e-prints, arXiv bulk source tars, or single e-print files
    wikipedia: list[str] = []  # pages-articles XML dumps, Parquet paths or Hub ids
    categorylinks: Path | None = None  # page,category CSV for the category-graph selection
    docs: list[Path] = []  # folders of textbooks and other local documents
    license: str | None = None  # required with docs: stored on every local document
    recipe: Path | None = None  # YAML overriding astrodata/recipes/corpus.yaml
    benchmarks: list[Path] = []  # question files to decontaminate against
    workers: int = Field(default=max(1, min(MAX_WORKERS, os.cpu_count() or 1)), ge=1, le=MAX_WORKERS)
    timeout_s: float = Field(default=120.0, gt=0, allow_inf_nan=False)  # per-document wall-clock limit
    max_memory_mb: int | None = Field(default=4096, ge=256)  # address-space cap of each e-print worker
    limit: int | None = Field(default=None, ge=0)
    shard: tuple[int, int] | None = None  # (K, N), K in 1..N
    bbl: Literal["inline", "drop"] = "inline"
    citations: Literal["marker", "keys", "drop"] = "marker"
    flush_every: int = Field(default=200, ge=1)  # rows per extracted shard (also written every FLUSH_SECONDS)
    from_catalog: bool = False  # download the e-prints of every harvested paper first
    eprint_url: str = "https://arxiv.org/e-print/"
    download_delay_s: float = Field(default=3.0, ge=0, allow_inf_nan=False)  # arXiv's politeness delay
    retry_failed: bool = False  # try every recorded failure again, whatever its reason
    progress: bool = True

    @field_validator("shard")
    @classmethod
    def _shard(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 1 <= v[0] <= v[1]:
            raise ValueError(f"K/N needs 1 <= K <= N, got {v[0]}/{v[1]}")
        return v

    @field_validator("eprints", "docs", "benchmarks")
    @classmethod
    def _paths_exist(cls, paths: list[Path]) -> list[Path]:
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise ValueError(f"{', '.join(missing)} does not exist")
        return paths

    @field_validator("categorylinks", "recipe")
    @classmethod
    def _file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{path} is not a file")
        return path

    @model_validator(mode="after")
    def _license_with_docs(self) -> CorpusOptions:
        if self.docs and not (self.license or "").strip():
            raise ValueError("--docs needs --license (stored on every document), e.g. --license CC-BY-4.0")
        return self


def check_out(out: Path, workdir: Path) -> Path:
    """The output folder, resolved; refuses one whose data swap would hit the current folder, the
    workspace, or a folder holding either. Raises ValueError naming the option."""
    resolved = Path(out).resolve()
    cwd, work = Path.cwd().resolve(), Path(workdir).resolve()
    if resolved in (cwd, *cwd.parents) or resolved == work or resolved in work.parents:
        raise ValueError(f"--out {out}: must be a folder of its own, not the current folder, the workdir or "
                         "a folder above them (its data/ and plots/ are replaced)")
    if resolved.exists() and not resolved.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    return resolved


def check_apart_from_inputs(out: Path | None, workdir: Path, inputs: list[Path]) -> None:
    """Refuses an output folder or workspace that is an input folder (`--eprints`, `--docs`), lies
    inside one (the next run would read our own files as documents), or, for `--out`, holds one
    (the data swap would replace it). Raises ValueError naming both options."""
    work = Path(workdir).resolve()
    for given in inputs:
        folder = Path(given).resolve()
        if not folder.is_dir():
            continue
        if out is not None and (Path(out).resolve() == folder or folder in Path(out).resolve().parents
                                or Path(out).resolve() in folder.parents):
            raise ValueError(f"--out {out}: overlaps the input folder {given}; write outputs elsewhere")
        if work == folder or folder in work.parents:
            raise ValueError(f"--workdir {workdir}: lies in the input folder {given}; put the workspace elsewhere")


def parse_shard(spec: str) -> tuple[int, int]:
    """`"2/8"` -> (2, 8), with a clear error for anything else."""
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 2/8), got {spec!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {spec!r}")
    return k, n


def shard_workspace(workdir: Path, shard: tuple[int, int] | None) -> Path:
    return workdir if shard is None else workdir / "shards" / f"{shard[0]}-of-{shard[1]}"


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


# -- phase 1: extract ------------------------------------------------------------------------
def settings_fingerprints(opts: CorpusOptions, recipe: Recipe) -> dict[str, str]:
    """Short hashes of the settings behind each kind of outcome: `convert` (conversion options, the
    time and memory limits, the source settings) for failures of the readers, and that plus the
    filter or decontamination settings for their drops. A failure recorded under other settings is
    tried again, since the settings, not the input, may have caused it."""
    convert = {"bbl": opts.bbl, "citations": opts.citations, "timeout_s": opts.timeout_s,
               "max_memory_mb": opts.max_memory_mb,
               **recipe.model_dump(mode="json", include={"wikipedia", "local_docs", "tokenizer", "latex"})}
    parts = {"convert": convert, "filter": {**convert, "filters": recipe.filters.model_dump(mode="json")},
             "decontam": {**convert, "decontam": recipe.decontam.model_dump(mode="json")},
             "losses": {**convert, "losses": recipe.losses.model_dump(mode="json")}}
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16] for k, v in parts.items()}


def fingerprint_for(fingerprints: dict[str, str], error: str | None) -> str:
    """The fingerprint that applies to a failure recorded as `stage: reason`."""
    stage = (error or "").partition(": ")[0]
    return fingerprints.get(stage, fingerprints["convert"])


def is_final(error: str | None) -> bool:
    """Whether a recorded failure (`stage: reason`) was caused by the input, not by the machine."""
    stage, _, reason = (error or "").partition(": ")
    return stage not in RETRYABLE_STAGES and reason not in RETRYABLE_REASONS


class Ledger:
    """Phase 1 bookkeeping, kept out of the steps: which documents are done, the shard writer,
    and the catalog rows of documents on their way into a shard.

    Order of writes, so that every kill point resumes to the same result: a shard's catalog rows
    are committed first with status `pending` (one transaction), then the shard is renamed into
    place, then its rows become `done`. On resume, a `pending` row whose id is in a shard is done;
    any other is extracted again. A failure is final only when the input caused it under the same
    settings (`settings_fingerprints`); timeouts and crashed or out-of-memory workers, failures
    under other settings, and with `--retry-failed` every failure, are tried again."""

    def __init__(self, ws: Workspace, opts: CorpusOptions, recipe: Recipe, run: Run):
        self.ws, self.opts, self.run = ws, opts, run
        self.fingerprints = settings_fingerprints(opts, recipe)
        in_shards: set[str] = set()
        for folder in extracted_folders(ws):
            in_shards |= existing_ids(folder)
        ws.con.register("ledger_in_shards", pa.table({"doc_id": sorted(in_shards)}, schema=_IDS))
        ws.con.execute("UPDATE documents SET status = 'done' WHERE stage = ? AND status = 'pending' "
                       "AND doc_id IN (SELECT doc_id FROM ledger_in_shards)", [EXTRACT_STAGE])
        ws.con.unregister("ledger_in_shards")
        failures = ws.con.execute(
            "SELECT doc_id, error, json_extract_string(details, '$.settings') FROM documents "
            "WHERE stage = ? AND status IN ('error', 'dropped')", [EXTRACT_STAGE]).fetchall()
        self.done = in_shards | {doc_id for doc_id, error, settings in failures
                                 if not opts.retry_failed and is_final(error)
                                 and settings == fingerprint_for(self.fingerprints, error)}
        self.pending: dict[str, dict[str, Any]] = {}
        self.writer = ShardWriter(ws.path("extracted"), CORPUS_SCHEMA, rows_per_shard=sys.maxsize)
        self.last_flush = time.monotonic()
        self.unmarked: list[str] = []  # ids in a written shard, not yet `done` in the catalog
        self.counts = run.counts.setdefault("extracted", {})
        self.finished = 0  # documents written to a shard or recorded as failed/dropped by this run

    def wanted(self, doc_id: str) -> bool:
        return doc_id not in self.done and doc_id not in self.pending and in_shard(doc_id, self.opts.shard)

    def reject(self, r: Rejection) -> None:
        """Record a document that will not reach the output, with its reason and the settings."""
        self.pending.pop(r.doc_id, None)
        settings = fingerprint_for(self.fingerprints, f"{r.stage}: {r.reason}")
        fields = {**r.fields, "details": {**(r.fields.get("details") or {}), "settings": settings}}
        self.ws.upsert_document(r.doc_id, source=r.source, source_id=r.source_id, stage=EXTRACT_STAGE,
                                status=r.status, run_id=self.run.run_id, error=f"{r.stage}: {r.reason}", **fields)
        if r.status == "error":
            self.run.error(r.doc_id, r.stage, r.reason, r.detail)
        key = "failed" if r.status == "error" else "dropped"
        self.run.counts[key] = self.run.counts.get(key, 0) + 1
        self.finished += 1
        self.done.add(r.doc_id)

    def losses(self, doc_id: str, losses: dict[tuple[str, str], int]) -> None:
        """Record what the converter could not render faithfully (replacing an earlier attempt's rows)."""
        self.ws.record_losses(doc_id, losses, run_id=self.run.run_id)

    def choice(self, doc_id: str, reason: str, detail: str) -> None:
        """Record a decision about a document that is not a failure (e.g. which copy of an id was used)."""
        self.run.error(doc_id, "discover", reason, detail)

    def write(self, doc: Document) -> None:
        row = doc.row
        if doc.id in self.done or doc.id in self.pending:  # two sources gave one id: the first one stays
            self.choice(doc.id, "duplicate-id", f"a second {row['source']} document with this id was ignored")
            return
        self.pending[doc.id] = {"source": row["source"], "source_id": row["source_id"], "stage": EXTRACT_STAGE,
                                "run_id": self.run.run_id, "error": None, **doc.fields}  # a retried failure
        self.writer.add(row)
        self.counts[row["source"]] = self.counts.get(row["source"], 0) + 1
        if len(self.pending) >= self.opts.flush_every or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Catalog rows (`pending`), then the shard, then `done` (see the class docstring)."""
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        con = self.ws.con
        con.begin()
        try:
            for doc_id, fields in self.pending.items():
                self.ws.upsert_document(doc_id, status="pending", **fields)
        except BaseException:  # e.g. Ctrl-C mid-way: the caller flushes again from a clean state
            con.rollback()
            raise
        con.commit()
        fault_point("corpus-catalog-pending")
        self.unmarked += self.writer.flush()  # a flush retried after Ctrl-C finds the buffer already written
        fault_point("corpus-shard")
        con.execute("UPDATE documents SET status = 'done' WHERE doc_id IN (SELECT unnest(?::VARCHAR[]))",
                    [self.unmarked])
        self.finished += len(self.unmarked)
        self.done.update(self.unmarked)
        self.unmarked = []
        self.pending.clear()


def extraction_steps(ws: Workspace, opts: CorpusOptions, recipe: Recipe, ledger: Ledger, progress: RunProgress) -> list[Step]:
    """The phase-1 pipeline: readers, then the per-document steps, in order."""
    steps: list[Step] = [ArxivReader(ws, opts.eprints, ledger.wanted, opts.shard, opts.limit, opts.workers,
                                     opts.timeout_s, opts.max_memory_mb, opts.bbl, opts.citations,
                                     recipe.latex.tables, progress, ledger.choice)]
    steps += [WikipediaReader(src, recipe.wikipedia, opts.categorylinks, ledger.wanted, opts.limit,
                              ws.path("logs", "wikipedia-selection.jsonl"), progress) for src in opts.wikipedia]
    steps += [LocalDocsReader(folder, opts.license, recipe.local_docs, ledger.wanted, opts.limit)
              for folder in opts.docs]
    steps.append(LossCounter(recipe.losses, ledger.losses))
    steps.append(QualityFilter(recipe.filters))
    if recipe.decontam.benchmarks:
        steps.append(Decontaminate(recipe.decontam))
    steps.append(TokenCounter(recipe.tokenizer.name, recipe.tokenizer.batch_size))
    return steps


def extract(ws: Workspace, opts: CorpusOptions, recipe: Recipe, run: Run) -> int:
    """Phase 1: the steps into extracted shards, then this workspace's MinHash signatures for phase 2;
    returns how many documents this run finished (written, failed or dropped).

    On SIGINT/SIGTERM the documents already through every step are written to a shard before
    `Interrupted` is raised, so a re-run starts after the last finished document."""
    with _progress(opts.progress, run) as progress:
        ledger = Ledger(ws, opts, recipe, run)
        steps = extraction_steps(ws, opts, recipe, ledger, progress)
        try:
            for doc in run_steps(steps, ledger.reject):
                ledger.write(doc)
        except BaseException as exc:
            if not is_interrupt(exc):
                raise
            ledger.flush()
            record_step_counts(run, steps)
            raise Interrupted(ledger.finished) from None
        ledger.flush()
    record_step_counts(run, steps)
    write_signatures(ws, recipe, run)
    fault_point("corpus-signatures")
    return ledger.finished


def record_step_counts(run: Run, steps: list[Step]) -> None:
    """Each step's counters into the run record (the readers' resume counts at the top level)."""
    readers = [s for s in steps if isinstance(s, ArxivReader)]
    for key in ("seen", "skipped_already_done"):
        run.counts[key] = run.counts.get(key, 0) + sum(s.counts[key] for s in readers)
    selection: Counter[str] = Counter()
    for s in steps:
        if isinstance(s, WikipediaReader):
            selection.update(s.selection)
        if isinstance(s, Decontaminate):
            run.counts["decontam"] = s.summary()
    if any(isinstance(s, WikipediaReader) for s in steps):
        run.counts["wikipedia_selection"] = dict(selection)
    run.counts["steps"] = {s.name: dict(s.counts) for s in steps}


def write_signatures(ws: Workspace, recipe: Recipe, run: Run) -> None:
    """The MinHash signatures of every extracted row of this workspace (phase 2 reads them)."""
    from astrodata.corpus.dedup import compute_signatures

    if shard_files(ws.path("extracted")):
        stats = compute_signatures(read_rows(ws.path("extracted")), ws.path("signatures", "extracted.parquet"),
                                   minhash_params(recipe))
        run.counts["signatures"] = {"documents": stats.docs, "seconds": round(stats.seconds, 3)}


def extracted_folders(ws: Workspace) -> list[Path]:
    """This workspace's extracted shards plus those of `--shard K/N` runs beneath it."""
    return [ws.path("extracted"), *sorted((ws.root / "shards").glob("*-of-*/extracted"))]


def merge_shard_catalogs(ws: Workspace) -> int:
    """Fold the catalogs of `--shard K/N` runs into this one (idempotent); returns how many."""
    catalogs = sorted((ws.root / "shards").glob("*-of-*/catalog.duckdb"))
    for i, path in enumerate(catalogs):
        alias = f"shard{i}"
        ws.con.execute(f"ATTACH ? AS {alias} (READ_ONLY)", [str(path)])
        try:
            ws.con.execute(f"INSERT OR REPLACE INTO documents SELECT * FROM {alias}.documents")
            ws.con.execute(f"INSERT OR IGNORE INTO runs SELECT * FROM {alias}.runs")
            ws.con.execute(f"DELETE FROM losses WHERE doc_id IN (SELECT doc_id FROM {alias}.losses)")
            ws.con.execute(f"INSERT INTO losses SELECT * FROM {alias}.losses")
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
def signature_folders(ws: Workspace) -> list[Path]:
    """The signature folders of this workspace and of its `--shard K/N` runs that hold any."""
    return [p for p in (ws.root / "signatures", *sorted((ws.root / "shards").glob("*-of-*/signatures")))
            if p.exists() and any(p.glob("*.parquet"))]


def deduplicate_shards(ws: Workspace, recipe: Recipe, run: Run, files: list[Path]) -> tuple[Any, set[str]]:
    """Near-duplicate clusters over every shard's signatures (None without any), the dropped
    documents marked in the catalog; returns (dedup result, ids to leave out)."""
    from astrodata.corpus.dedup import ExactJaccard, deduplicate, dropped_ids

    signatures = signature_folders(ws)
    if not (files and signatures):
        return None, set()
    params = minhash_params(recipe)
    exact = ExactJaccard.from_parquet(files, ngram=params.ngram) if recipe.dedup.check == "exact" else None
    dedup = deduplicate(ws.con, signatures, params, jaccard=exact, run_id=run.run_id)
    ws.con.execute("""
        UPDATE documents SET status = 'dropped', error = 'dedup: ' || c.reason,
               details = json_object('filter', 'dedup', 'reason', c.reason, 'kept_doc_id', c.kept_doc_id)
        FROM dedup_clusters c WHERE documents.doc_id = c.doc_id AND NOT c.kept""")
    return dedup, dropped_ids(ws.con)


def write_rows(folders: list[Path], drop: set[str], dest: Path) -> None:
    """Every extracted row once, in shard order, minus `drop`, as `dest/data/train-*.parquet`."""
    seen: set[str] = set()
    with ShardWriter(dest, CORPUS_SCHEMA, rows_per_shard=10_000, prefix="train") as writer:
        for folder in folders:
            for row in read_rows(folder):
                if row["id"] in seen or row["id"] in drop:
                    continue
                seen.add(row["id"])
                writer.add(row)


def output_stats(ws: Workspace, dest: Path, dedup: Any, recipe: Recipe) -> dict[str, Any]:
    """The dataset's statistics (`astrodata.corpus.stats`) with the catalog's drops and errors."""
    from astrodata.corpus.stats import corpus_stats, unhandled_constructs

    drops = [{"filter": f} for (f,) in ws.con.execute(
        "SELECT coalesce(json_extract_string(details, '$.filter'), 'unknown') FROM documents "
        "WHERE stage = ? AND status = 'dropped'", [EXTRACT_STAGE]).fetchall()]
    errors = dict(ws.con.execute("SELECT reason, count(*) FROM errors GROUP BY reason ORDER BY 2 DESC").fetchall())
    return corpus_stats(read_rows(dest), drops, dedup.cluster_sizes if dedup else None,
                        extra={"errors_per_reason": errors, "dedup": dedup.as_dict() if dedup else None,
                               "unhandled_constructs": unhandled_constructs(ws.con),
                               "recipe": recipe.model_dump(mode="json")})


def swap_in(tmp: Path, out: Path) -> None:
    """Move the finished dataset from `tmp` into `out`, replacing its data and plots."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("data", "plots"):
        shutil.rmtree(out / name, ignore_errors=True)
    for item in sorted(tmp.iterdir()):
        os.replace(item, out / item.name)
        fault_point("corpus-swap")
    tmp.rmdir()


def finalize(ws: Workspace, opts: CorpusOptions, recipe: Recipe, run: Run) -> dict[str, Any]:
    """Deduplicate across every extracted shard, then write the output dataset afresh + its stats."""
    from astrodata.corpus.stats import write_report

    folders = extracted_folders(ws)
    dedup, drop = deduplicate_shards(ws, recipe, run, [f for folder in folders for f in shard_files(folder)])
    tmp = opts.out.with_name(opts.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_rows(folders, drop, tmp)
    fault_point("corpus-out-partial")
    stats = output_stats(ws, tmp, dedup, recipe)
    write_report(tmp, stats)
    fault_point("corpus-stats")
    swap_in(tmp, opts.out)
    return {"documents": stats["documents"], "tokens": stats["tokens"], "duplicates_removed": len(drop)}


# -- entry -----------------------------------------------------------------------------------
def build_corpus(workdir: Path, opts: CorpusOptions) -> dict[str, Any]:
    """Run phase 1 (this shard, or everything) and, when not sharded, phase 2.

    Everything is validated before any work (options, recipe, `--out`); the output folder is
    locked for the whole run (`OutputLocked` when another run holds it). SIGINT or SIGTERM raises
    `Interrupted` once the finished documents are safe. The e-print workers are spawned processes,
    so a script calling this needs the usual `if __name__ == "__main__":` guard (notebooks and the
    CLI need nothing)."""
    recipe = load_recipe(opts.recipe)
    if opts.benchmarks:
        recipe.decontam.benchmarks = [*recipe.decontam.benchmarks, *map(str, opts.benchmarks)]
    require_utf8_path(Path(workdir), "--workdir")
    if Path(workdir).exists() and not Path(workdir).is_dir():
        raise ValueError(f"--workdir {workdir}: exists and is not a folder")
    if opts.shard is None:
        opts.out = check_out(require_utf8_path(opts.out, "--out"), workdir)
    check_apart_from_inputs(opts.out if opts.shard is None else None, workdir, [*opts.eprints, *opts.docs])
    with interrupt_handling(), output_lock(opts.out) if opts.shard is None else nullcontext():
        ws = Workspace(shard_workspace(Path(workdir), opts.shard))
        try:
            config = opts.model_dump(mode="json") | {"recipe": recipe.model_dump(mode="json")}
            with ws.run("build-corpus", config) as run:
                run.counts.update(seen=0, skipped_already_done=0, failed=0, dropped=0)
                if opts.shard is None:
                    run.counts["shard_catalogs_merged"] = merge_shard_catalogs(ws)
                if opts.from_catalog:
                    opts.eprints = [*opts.eprints, download_harvested(ws, opts, run)]
                try:
                    finished = extract(ws, opts, recipe, run)
                except Interrupted:
                    raise
                except BaseException as exc:  # an interrupt outside extract's own handler (e.g. signatures)
                    if not is_interrupt(exc):
                        raise
                    raise Interrupted(ws.con.execute(
                        "SELECT count(*) FROM documents WHERE run_id = ? AND status <> 'pending'",
                        [run.run_id]).fetchone()[0]) from None
                if opts.shard is None:
                    try:
                        run.counts["output"] = finalize(ws, opts, recipe, run)
                    except BaseException as exc:
                        if not is_interrupt(exc):
                            raise
                        raise Interrupted(finished) from None
                summary = dict(run.counts)
            return summary
        finally:
            ws.close()


def _progress(enabled: bool, run: Run) -> RunProgress:
    return RunProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       enabled=enabled, run=run)
