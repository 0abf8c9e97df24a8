"""The blocks of the corpus build, all of one shape (as datatrove's `PipelineStep.run`).

A `Step` takes an iterator of `Document`s and yields `Document`s. Readers (arXiv e-prints,
Wikipedia, local documents) pass their input through and then yield their own; the other steps
(quality filters, decontamination, token counts) yield what they keep. A step owns its counters
(`Step.counts`: in, out, and each reason it dropped or failed a document) and reports every
document it does not pass on through `Step.on_reject`, a callback the build wires to the
catalog; no step writes to the catalog itself. The build (`astrodata.corpus.build`) is a list of
these steps ending at the extracted-shard writer.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import resource
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrodata.core.workspace import Workspace

BULK_PREFIX = "arXiv_src_"


@dataclass
class Document:
    """One document on its way through the build: the corpus row and its catalog fields
    (`seconds`, `residue_per_1k`, `details`, ... as in the catalog's `documents` table)."""

    row: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    # (kind, name) -> count of what the converter met and could not render faithfully (issue 10)
    losses: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.row["id"]

    @classmethod
    def new(cls, row: dict[str, Any], **fields: Any) -> Document:
        """A converted document; its word count is taken before any step changes the text. The
        reader's `losses` ([kind, name, count] triples) move from the row to `Document.losses`."""
        losses = {(kind, name): n for kind, name, n in row.pop("losses", None) or []}
        return cls(row, {"words": len(row["text"].split()), **fields}, losses)


@dataclass
class Rejection:
    """A document that will not reach the output: failed (`status="error"`) or dropped."""

    doc_id: str
    source: str
    source_id: str
    stage: str  # unpack | flatten | latex | worker | read | download | filter | decontam | discover
    reason: str
    detail: str
    status: str = "error"  # error | dropped
    fields: dict[str, Any] = field(default_factory=dict)  # more catalog fields (words, details, seconds)


class Step:
    """Documents in, documents out; `counts` is this step's own record of what it did."""

    name = "step"

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.on_reject: Callable[[Rejection], None] = lambda r: None

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        raise NotImplementedError

    def reject(self, rejection: Rejection) -> None:
        self.counts[f"{rejection.status}:{rejection.reason}"] += 1
        self.on_reject(rejection)


def run_steps(steps: list[Step], on_reject: Callable[[Rejection], None]) -> Iterator[Document]:
    """Chain the steps (the first gets no input) and yield what comes out of the last."""
    docs: Iterator[Document] = iter(())
    for step in steps:
        step.on_reject = on_reject
        docs = step.run(docs)
    return docs


# -- readers ---------------------------------------------------------------------------------
@dataclass
class Task:
    """One e-print to extract: where its bytes are and how to call it."""

    doc_id: str
    source: str
    source_id: str
    path: Path | None = None
    data: bytes | None = None


def in_shard(doc_id: str, shard: tuple[int, int] | None) -> bool:
    """Stable assignment of documents to shards (same answer on every machine and run)."""
    if shard is None:
        return True
    k, n = shard
    h = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")
    return h % n == k - 1


def readable_id(name: str) -> str:
    """A file name as a valid string: bytes that are not UTF-8 (kept by Python as surrogates) become
    `\\xNN` escapes, so the id can be stored in the catalog and the shards and still be read."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_bulk_tar(path: Path) -> bool:
    return path.name.startswith(BULK_PREFIX) and path.name.endswith(".tar")


def arxiv_tasks(inputs: list[Path], on_error: Callable[[Rejection], None]) -> Iterator[Task]:
    """Every e-print under the given folders or files: arXiv bulk tars (`arXiv_src_*.tar`) are read
    member by member, any other file is one e-print. A damaged bulk tar is recorded as an error
    (after its good members) and the other inputs go on; so is each subfolder, FIFO or broken link
    in a folder (`discover`: `subfolder` / `not-a-file`), which is not read."""
    from astrodata.sources.eprints import EprintError, iter_bulk_tar, iter_local_eprints

    for item in inputs:
        if not item.exists():
            raise FileNotFoundError(f"e-prints folder not found: {item}")
        if item.is_file() and not is_bulk_tar(item):
            from astrodata.core.arxiv_ids import id_from_filename

            eprint_id = readable_id(id_from_filename(item.name))
            yield Task(f"arxiv:{eprint_id}", "arxiv", eprint_id, path=item)
            continue
        bulk = [item] if item.is_file() else sorted(item.glob(f"{BULK_PREFIX}*.tar"))
        for tar_path in bulk:
            try:
                for eprint_id, data in iter_bulk_tar(tar_path):
                    eprint_id = readable_id(eprint_id)
                    yield Task(f"arxiv:{eprint_id}", "arxiv", eprint_id, data=data)
            except EprintError as exc:
                name = readable_id(tar_path.name)
                on_error(Rejection(f"arxiv-bulk:{name}", "arxiv-bulk", name, "unpack", exc.reason, str(exc),
                                   fields={"details": {"detail": str(exc)}}))
        if item.is_dir():
            for entry in sorted(item.iterdir()):  # what is not read is recorded, never silently lost
                if not entry.name.startswith(".") and not entry.is_file():
                    reason = "subfolder" if entry.is_dir() else "not-a-file"
                    name = readable_id(entry.name)
                    detail = f"{reason}: {readable_id(str(entry))} not read (--eprints reads files, not subfolders)"
                    on_error(Rejection(f"arxiv-skipped:{name}", "arxiv-skipped", name, "discover", reason, detail,
                                       fields={"details": {"detail": detail}}))
            for eprint_id, path in iter_local_eprints(item):
                if not path.name.startswith(BULK_PREFIX):
                    eprint_id = readable_id(eprint_id)
                    yield Task(f"arxiv:{eprint_id}", "arxiv", eprint_id, path=path)


def extract_arxiv(task: Task, bbl: str, citations: str, tables: str = "markdown") -> dict[str, Any]:
    """Unpack, flatten and convert one e-print (in a worker process); never raises: failures
    come back as data."""
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
        doc = latex_to_text(flat.text, TextOptions(citations=citations, tables=tables),
                            preamble="\n".join(flat.packages.values()))
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
        "losses": [[kind, name, n] for (kind, name), n in doc.losses.items()],
    }


def _worker_limits(max_memory_mb: int | None) -> None:
    """Worker initializer. Ctrl-C reaches the whole process group, but only the parent handles it
    (it stops the pool); the address-space cap turns a runaway e-print into a `MemoryError` of that
    document instead of the machine swapping or the kernel's OOM killer picking a process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if max_memory_mb:
        limit = max_memory_mb * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def arxiv_row(ws: Workspace, task: Task, result: dict[str, Any]) -> dict[str, Any]:
    """A corpus row: catalog metadata (when harvested) wins over what the LaTeX says."""
    from astrodata.sources.arxiv_meta import paper_metadata, row_license_url_date

    meta = paper_metadata(ws, task.source_id) or {}
    return {
        "id": task.doc_id,
        "source": task.source,
        "source_id": task.source_id,
        "title": meta.get("title") or result["title"] or task.source_id,
        "text": result["text"],
        "n_tokens": None,
        # licence (arXiv's default where the record names none), url and date for every known arXiv id
        **row_license_url_date(task.source_id, meta),
    }


class ArxivReader(Step):
    """E-prints through a process pool, each with a wall-clock limit (pebble kills overruns) and
    an address-space cap; `on_choice(doc_id, reason, detail)` records decisions such as which of
    two copies of one id was used."""

    name = "arxiv"

    def __init__(self, ws: Workspace, inputs: list[Path], wanted: Callable[[str], bool],
                 shard: tuple[int, int] | None, limit: int | None, workers: int, timeout_s: float,
                 max_memory_mb: int | None, bbl: str, citations: str, tables: str, progress: Any,
                 on_choice: Callable[[str, str, str], None]):
        super().__init__()
        self.ws, self.inputs, self.wanted, self.shard, self.limit = ws, inputs, wanted, shard, limit
        self.workers, self.timeout_s, self.max_memory_mb = workers, timeout_s, max_memory_mb
        self.bbl, self.citations, self.progress, self.on_choice = bbl, citations, progress, on_choice
        self.tables = tables

    def tasks(self) -> Iterator[Task]:
        """This shard's tasks, the first `limit`, each id once (a second source of the same id is
        recorded as a choice: the first one found is used), without those already done."""
        first: dict[str, str] = {}
        for task in arxiv_tasks(self.inputs, self.reject):
            if not in_shard(task.doc_id, self.shard):
                continue
            where = str(task.path) if task.path is not None else "a bulk tar"
            if task.doc_id in first:
                self.counts["duplicate_ids"] += 1
                self.on_choice(task.doc_id, "duplicate-id", f"used the copy from {first[task.doc_id]}; "
                                                            f"ignored the one from {where}")
                continue
            if self.limit is not None and len(first) >= self.limit:
                return
            first[task.doc_id] = where
            self.counts["seen"] += 1
            if self.wanted(task.doc_id):
                yield task
            else:
                self.counts["skipped_already_done"] += 1

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        from pebble import ProcessPool

        yield from docs
        bar = self.progress.add_task("arxiv", total=None, failures=0)
        # Workers are spawned, not forked: the parent runs tokenizers (Rust threads) while the
        # pool recycles workers, and a fork taken mid-thread can crash or deadlock the child.
        # At most `window` e-prints are in flight, so bulk tars are never held in memory whole.
        spawn = multiprocessing.get_context("spawn")
        window = 4 * self.workers
        pool = ProcessPool(max_workers=self.workers, max_tasks=200, context=spawn,
                           initializer=_worker_limits, initargs=(self.max_memory_mb,))
        try:
            in_flight: deque[tuple[Task, Any]] = deque()
            tasks = self.tasks()
            while True:
                for task in itertools.islice(tasks, window - len(in_flight)):
                    in_flight.append((task, pool.schedule(extract_arxiv, args=(task, self.bbl, self.citations, self.tables),
                                                          timeout=self.timeout_s)))
                if not in_flight:
                    break
                task, future = in_flight.popleft()
                result = self.result(future)
                self.progress.advance(bar)
                if not result["ok"]:
                    self.counts["failed"] += 1
                    self.progress.update(bar, failures=self.counts["failed"])
                    self.reject(Rejection(task.doc_id, task.source, task.source_id, result["stage"],
                                          result["reason"], result["detail"],
                                          fields={"seconds": result["seconds"],
                                                  "details": {"detail": result["detail"]}}))
                    continue
                self.counts["out"] += 1
                yield Document.new(
                    {**arxiv_row(self.ws, task, result), "losses": result["losses"]}, seconds=result["seconds"],
                    residue_per_1k=result["residue_per_1k"], macros_expanded=result["macros_expanded"],
                    missing_inputs=result["missing_inputs"], encoding=result["encoding"],
                    details={"main_file": result["main_file"], "kind": result["kind"]})
        except BaseException:
            pool.stop()  # Ctrl-C or an error: do not wait for the e-prints still in flight
            raise
        finally:
            pool.close()
            pool.join()

    def result(self, future: Any) -> dict[str, Any]:
        try:
            return future.result()
        except FutureTimeout:
            return {"ok": False, "stage": "latex", "reason": "timeout",
                    "detail": f"over the {self.timeout_s:g} s per-document limit", "seconds": self.timeout_s}
        except Exception as exc:  # noqa: BLE001 - a crashed worker (e.g. OOM-killed) is a per-doc error
            return {"ok": False, "stage": "worker", "reason": type(exc).__name__,
                    "detail": str(exc)[:500], "seconds": None}


class WikipediaReader(Step):
    """Astronomy pages of a dump or Parquet dataset; every selection decision is logged."""

    name = "wikipedia"

    def __init__(self, source: str, settings: Any, categorylinks: Path | None, wanted: Callable[[str], bool],
                 limit: int | None, log_path: Path, progress: Any):
        super().__init__()
        self.source, self.settings, self.categorylinks, self.wanted = source, settings, categorylinks, wanted
        self.limit, self.log_path, self.progress = limit, log_path, progress
        self.selection: Counter[str] = Counter()  # action -> pages

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        from astrodata.sources.wikipedia import iter_wikipedia_documents

        yield from docs
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        reasons: dict[str, str] = {}
        bar = self.progress.add_task("wikipedia", total=None)
        with self.log_path.open("a") as log:
            def decided(d: Any) -> None:
                self.selection[d.action] += 1
                reasons[f"wikipedia:{d.page_id}"] = d.reason
                log.write(json.dumps({"page_id": d.page_id, "title": d.title, "action": d.action,
                                      "reason": d.reason, "score": d.score}) + "\n")
                self.progress.advance(bar)

            rows = iter_wikipedia_documents(self.source, self.settings, on_decision=decided,
                                            categorylinks=self.categorylinks, select_ids=self.wanted)
            for n, row in enumerate(rows):
                if self.limit is not None and n >= self.limit:
                    break
                self.counts["out"] += 1
                yield Document.new(row, details={"selection": reasons.pop(row["id"], "")})


class LocalDocsReader(Step):
    """Textbooks and other local files, one document per file or chapter."""

    name = "local_docs"

    def __init__(self, folder: Path, license: str | None, settings: Any, wanted: Callable[[str], bool],
                 limit: int | None):
        super().__init__()
        self.folder, self.license, self.settings, self.wanted, self.limit = folder, license, settings, wanted, limit

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        from astrodata.textbooks.local_docs import iter_local_documents

        yield from docs

        def unreadable(rel: str, reason: str) -> None:
            self.reject(Rejection(f"{self.settings.source}:{rel}", self.settings.source, rel, "read", "unreadable",
                                  reason, fields={"details": {"detail": reason}}))

        for row in iter_local_documents(self.folder, self.license, self.settings, on_error=unreadable):
            if self.wanted(row["id"]) and (self.limit is None or self.counts["out"] < self.limit):
                self.counts["out"] += 1
                yield Document.new(row)


# -- per-document steps applied to every source ------------------------------------------------
class LossCounter(Step):
    """Issue 10: hands each document's losses (what its converter could not render faithfully) to
    `record(doc_id, losses)` (the catalog's `losses` table); above `settings.max_per_1k_words` the
    document is flagged (`details.losses_flagged`) or dropped (`settings.action`)."""

    name = "losses"

    def __init__(self, settings: Any, record: Callable[[str, dict[tuple[str, str], int]], None]):
        super().__init__()
        self.settings, self.record = settings, record

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        limit = self.settings.max_per_1k_words
        for doc in docs:
            self.record(doc.id, doc.losses)
            self.counts["documents_with_losses"] += bool(doc.losses)
            words = max(doc.fields.get("words") or 0, 1)
            rate = 1000.0 * sum(doc.losses.values()) / words
            if limit is not None and rate > limit:
                if self.settings.action == "drop":
                    self.reject(Rejection(doc.id, doc.row["source"], doc.row["source_id"], "losses",
                                          "too-many-losses", f"{rate:.1f} losses per 1,000 words (limit {limit:g})",
                                          status="dropped", fields={"words": doc.fields.get("words"), "details": {
                                              "filter": "losses", "losses_per_1k_words": round(rate, 2)}}))
                    continue
                doc.fields["details"] = {**(doc.fields.get("details") or {}), "losses_flagged": round(rate, 2)}
            yield doc


class QualityFilter(Step):
    """Drops documents that fail a quality filter (`astrodata.corpus.filters`), with its value and rule."""

    name = "filters"

    def __init__(self, settings: Any):
        super().__init__()
        from astrodata.corpus.filters import active_filters

        self.filters = active_filters(settings)

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        from astrodata.corpus.filters import Drop, first_failure

        for doc in docs:
            self.counts["in"] += 1
            failure = first_failure(doc.row.get("text") or "", self.filters)
            if failure is None:
                self.counts["out"] += 1
                yield doc
                continue
            drop = Drop(doc.id, *failure)
            self.reject(Rejection(doc.id, doc.row["source"], doc.row["source_id"], "filter", drop.filter,
                                  f"{drop.filter} = {drop.value:.4g} (rule {drop.rule})", status="dropped",
                                  fields={"words": doc.fields.get("words"), "details": drop.details()}))


class Decontaminate(Step):
    """Drops (or redacts) documents that share n-grams with benchmark questions."""

    name = "decontam"

    def __init__(self, settings: Any):
        super().__init__()
        from astrodata.corpus.decontam import Decontaminator

        self.settings = settings
        self.checker = Decontaminator.from_files(settings.benchmarks, mode=settings.mode, n=settings.ngram,
                                                 min_words=settings.min_words)

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        s = self.settings
        for doc in docs:
            self.counts["in"] += 1
            hits = self.checker.matches(doc.row["text"])
            kept = self.checker.apply(doc.row) if hits else doc.row
            if kept is None:
                self.reject(Rejection(doc.id, doc.row["source"], doc.row["source_id"], "decontam",
                                      "benchmark-overlap", f"{s.ngram}-gram overlap with {sorted(hits)}",
                                      status="dropped", fields={"details": {"filter": "decontamination",
                                                                            "benchmarks": hits}}))
                continue
            if hits:
                doc.fields["details"] = {**(doc.fields.get("details") or {}), "redacted_for": hits}
            doc.row = kept
            self.counts["out"] += 1
            yield doc

    def summary(self) -> dict[str, Any]:
        st = self.checker.stats
        return {"mode": self.settings.mode, "per_benchmark": dict(st.per_benchmark), "dropped": st.dropped,
                "redacted": st.redacted}


class TokenCounter(Step):
    """Fills `n_tokens` (row and catalog), tokenizing `batch_size` documents per call."""

    name = "tokens"

    def __init__(self, tokenizer: str, batch_size: int):
        super().__init__()
        self.tokenizer, self.batch_size = tokenizer, batch_size

    def run(self, docs: Iterator[Document]) -> Iterator[Document]:
        from astrodata.corpus.tokens import add_token_counts

        by_row: dict[int, Document] = {}

        def rows() -> Iterator[dict[str, Any]]:
            for doc in docs:
                by_row[id(doc.row)] = doc
                yield doc.row

        for row in add_token_counts(rows(), self.tokenizer, self.batch_size):
            doc = by_row.pop(id(row))
            doc.fields["n_tokens"] = row["n_tokens"]
            self.counts["out"] += 1
            self.counts["tokens"] += row["n_tokens"]
            yield doc
