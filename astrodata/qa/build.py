"""`astrodata build-qa`: a corpus -> graded QA pairs, summaries, metadata tasks and an SFT mix.

Flow: read the corpus (first `limit` documents) -> split papers into passages -> check every
prompt fits the model's context (before any request) -> per chunk of documents, generate QA pairs
per passage and a summary per paper, grade each pair with the judge -> metadata tasks from the
catalog -> Infinity-Instruct rows -> question dedup, decontamination, mix -> output shards.

State lives in the catalog: replies in `generation_requests` (the engine's cache) and this
build's items in `qa_items` (cleared at the start of each build of the same output folder and
refilled from the cache, so a resume after kill -9 costs no request and cannot duplicate an
item). The output folder is written at the end, to a temporary folder swapped in whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from string import Template
from typing import Any

import pyarrow as pa

from astrodata.core.arxiv_ids import parse_arxiv_id
from astrodata.core.control import (
    Interrupted,
    asyncio_sigint,
    fault_point,
    interrupt_handling,
    is_interrupt,
    output_lock,
    require_utf8_path,
)
from astrodata.core.shards import ShardWriter, read_rows, shard_files, write_stats
from astrodata.core.textnorm import text_hash
from astrodata.core.workspace import DEFAULT_WORKDIR, Run, Workspace
from astrodata.qa.backends import Backend, EndpointBackend, Transient
from astrodata.qa.batch import ingest_batch, split_batch, write_batch
from astrodata.qa.engine import SCHEMA as REQUESTS_SCHEMA
from astrodata.qa.engine import Engine, Job
from astrodata.qa.grade import grade_fields, grounding_fields, judge_job, judge_method, pair_defect
from astrodata.qa.pool import EndpointPool, make_backend
from astrodata.qa.recipe import QARecipe, load_qa_recipe
from astrodata.qa.tasks import (
    Passage,
    abstract_of,
    load_prompt,
    metadata_fields,
    metadata_pairs,
    metadata_templates,
    qa_schema,
    split_passages,
    summary_schema,
)

SCORES = ("correctness", "standalone", "pertinence", "overall")
GROUNDING_SCORES = ("answer_pmi", "question_pmi")
QA_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("kind", pa.string()),  # qa | summary | metadata | instruct
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("source_id", pa.string()),  # paper id and version (or the instruct row id)
    ("doc_id", pa.string()),  # the corpus row
    ("passage_id", pa.string()),
    ("char_start", pa.int64()),  # span of the source text in the corpus row's `text`
    ("char_end", pa.int64()),
    ("generator", pa.string()),
    ("prompt_version", pa.string()),
    ("grade", pa.int8()),  # the judge's overall grade, 1-5
    # the LLM judge's four grades; the grounding judge's overall grade and its two scores (nats/token)
    ("scores", pa.struct([(s, pa.int8()) for s in SCORES] + [(s, pa.float32()) for s in GROUNDING_SCORES])),
    ("judge", pa.string()),
])

ITEMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS qa_items (
    out             VARCHAR NOT NULL,   -- the output folder of the build
    id              VARCHAR NOT NULL,
    doc_index       BIGINT NOT NULL,    -- output order: document, then position within it
    pos             BIGINT NOT NULL,
    kind            VARCHAR NOT NULL,
    messages        JSON NOT NULL,
    source_id       VARCHAR,
    doc_id          VARCHAR,
    passage_id      VARCHAR,
    char_start      BIGINT,
    char_end        BIGINT,
    generator       VARCHAR,
    prompt_version  VARCHAR,
    grade           TINYINT,
    scores          JSON,
    judge           VARCHAR,
    status          VARCHAR NOT NULL,   -- kept | candidate | below-threshold | ungraded | duplicate | contaminated | not-mixed
    reason          VARCHAR,
    run_id          VARCHAR,
    PRIMARY KEY (out, id)
);
"""
ITEM_COLUMNS = ("out", "id", "doc_index", "pos", "kind", "messages", "source_id", "doc_id", "passage_id",
                "char_start", "char_end", "generator", "prompt_version", "grade", "scores", "judge", "status",
                "reason", "run_id")


class QAInputError(ValueError):
    """Bad input the user can fix (empty corpus, prompt longer than the context, bad options)."""


def _item_id(kind: str, *parts: Any) -> str:
    return f"{kind}-{text_hash('|'.join(map(str, parts)))[:20]}"


def iter_docs(corpus: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    """The first `limit` corpus rows, in shard order."""
    for i, row in enumerate(read_rows(corpus, columns=["id", "source", "source_id", "title", "text"])):
        if limit is not None and i >= limit:
            return
        if not isinstance(row.get("id"), str) or not isinstance(row.get("text"), str):
            raise QAInputError(f"corpus {corpus}: row {i + 1} has no string id/text")
        yield row


class Builder:
    """One build: the recipe, backends, engine and counters, and the steps that use them."""

    def __init__(self, ws: Workspace, run: Run, recipe: QARecipe, corpus: Path, out: Path, limit: int | None,
                 generator: Backend, judge: Backend | None, engine: Engine):
        self.ws, self.run, self.recipe = ws, run, recipe
        self.corpus, self.out, self.limit = corpus, out, limit
        self.generator, self.judge, self.engine = generator, judge, engine
        self.counts: Counter[str] = Counter()
        self.out_key = str(out)

    # -- planning ------------------------------------------------------------------------------
    def passages(self, doc: dict[str, Any]) -> list[Passage]:
        p = self.recipe.passages
        passages = split_passages(doc["id"], doc["text"], p.size_chars, p.overlap_chars, p.min_chars)
        caps = [p.max_per_doc, p.embedded_max_per_doc if self.generator.via == "embedded" else None]
        cap = min((c for c in caps if c is not None), default=None)
        return passages[:cap] if cap is not None else passages

    def paper(self, doc: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        """(bare arXiv id, catalog row) for the document; either may be None."""
        parsed = parse_arxiv_id(str(doc.get("source_id") or "")) if doc.get("source") == "arxiv" else None
        if parsed is None:
            return None, None
        cols = ("title", "authors", "abstract", "categories", "primary_category", "published")
        rows = self.ws.con.execute(f"SELECT {', '.join(cols)} FROM papers WHERE arxiv_id = ?", [parsed[0]]).fetchall()
        return parsed[0], (dict(zip(cols, rows[0], strict=True)) if rows else None)

    def context(self, doc: dict[str, Any]) -> dict[str, str]:
        _, paper = self.paper(doc)
        title = ((paper or {}).get("title") or doc.get("title") or doc["id"]).strip()
        abstract = (paper or {}).get("abstract") or abstract_of(doc["text"], doc.get("title")) or "(not available)"
        return {"title": " ".join(title.split()), "abstract": " ".join(abstract.split())[: self.recipe.qa.abstract_chars]}

    def qa_job(self, p: Passage, ctx: dict[str, str]) -> Job:
        q = self.recipe.qa
        messages = load_prompt("qa").messages(passage=p.text, k=q.pairs_per_passage, **ctx)
        return Job(self.generator, "qa", p.passage_id, messages,
                   qa_schema(q.pairs_per_passage, q.max_question_chars, q.max_answer_chars), q.max_tokens)

    def summary_job(self, doc: dict[str, Any], ctx: dict[str, str]) -> Job:
        s = self.recipe.summary
        messages = load_prompt("summary").messages(text=doc["text"][: s.input_chars], **ctx)
        return Job(self.generator, "summary", doc["id"], messages, summary_schema(s.max_summary_chars), s.max_tokens)

    def check_context(self) -> int:
        """Every prompt plus its max_tokens must fit the model's context: a first pass over the
        corpus that raises before any request. Returns the number of documents."""
        limit, n_docs = self.generator.context_tokens, 0
        for doc in iter_docs(self.corpus, self.limit):
            n_docs += 1
            if limit is None:
                continue
            ctx = self.context(doc)
            jobs = [self.qa_job(p, ctx) for p in self.passages(doc)] if self.recipe.qa.enabled else []
            if self.recipe.summary.enabled:
                jobs.append(self.summary_job(doc, ctx))
            for job in jobs:
                n = self.generator.count_tokens(job.messages)
                if n is not None and n + job.max_tokens > limit:
                    what = f"passage {job.label}" if job.task == "qa" else f"the summary prompt of {job.label}"
                    raise QAInputError(
                        f"{what} needs {n} prompt tokens + {job.max_tokens} to generate, over the model context "
                        f"of {limit} tokens; lower passages.size_chars / summary.input_chars in the recipe")
        if n_docs == 0:
            raise QAInputError(f"corpus {self.corpus}: no documents")
        return n_docs

    # -- generation ------------------------------------------------------------------------------
    def _row(self, doc_index: int, pos: int, kind: str, item_id: str, messages: list[dict[str, str]],
             doc: dict[str, Any] | None, **cols: Any) -> dict[str, Any]:
        row = dict.fromkeys(ITEM_COLUMNS)
        row.update(out=self.out_key, id=item_id, doc_index=doc_index, pos=pos, kind=kind,
                   messages=json.dumps(messages, ensure_ascii=False), status="candidate", run_id=self.run.run_id)
        if doc is not None:
            row.update(source_id=doc.get("source_id"), doc_id=doc["id"])
        row.update(cols)
        if isinstance(row.get("scores"), dict):
            row["scores"] = json.dumps(row["scores"])
        return row

    def _failed(self, label: str, stage: str, status: str, error: str | None) -> None:
        self.counts[f"{stage}_{status}"] += 1
        if status != "deferred":
            self.run.error(label, f"qa-{stage}", status, error or "")

    async def passage_items(self, doc_index: int, doc: dict[str, Any], p: Passage, ctx: dict[str, str]) -> list[dict]:
        out = await self.engine.run(self.qa_job(p, ctx))
        self.counts["passages"] += 1
        if out.status != "ok":
            self._failed(p.passage_id, "qa", out.status, out.error)
            return []
        self.counts["qa_ok"] += 1
        version, rows = load_prompt("qa").version, []
        for i, pair in enumerate(out.value.pairs):  # type: ignore[union-attr]
            item_id = _item_id("qa", p.passage_id, version, self.generator.name, i)
            rows.append(self._row(doc_index, p.index * 1000 + i, "qa", item_id,
                                  [{"role": "user", "content": pair.question},
                                   {"role": "assistant", "content": pair.answer}],
                                  doc, passage_id=p.passage_id, char_start=p.start, char_end=p.end,
                                  generator=self.generator.name, prompt_version=version))
        if self.judge is not None:  # the pairs are graded together (a batch for the embedded model)
            await asyncio.gather(*(self.grade(row, pair.question, pair.answer, p.text)
                                   for row, pair in zip(rows, out.value.pairs, strict=True)))  # type: ignore[union-attr]
        return rows

    async def grade(self, row: dict[str, Any], question: str, answer: str, passage: str) -> None:
        """Fill the row's grade columns from the judge (or mark it ungraded / below threshold)."""
        assert self.judge is not None
        settings = self.recipe.judge
        if defect := pair_defect(question, answer):
            row.update(status="below-threshold", reason=f"junk: {defect}")
            return
        if judge_method(settings, self.judge) == "grounding":
            try:
                fields = await grounding_fields(self.judge, question, answer, passage, settings)  # type: ignore[arg-type]
            except Transient as exc:
                self._failed(row["id"], "grade", "failed", str(exc))
                row.update(status="ungraded", reason=f"judge failed: {exc}")
                return
        else:
            g = await self.engine.run(judge_job(self.judge, row["id"], question, answer, passage, settings))
            if g.status != "ok":
                self._failed(row["id"], "grade", g.status, g.error)
                row.update(status="ungraded", reason=f"judge {g.status}: {g.error}")
                return
            fields = grade_fields(g.value, self.judge.name)  # type: ignore[arg-type]
        row.update(fields, scores=json.dumps(fields["scores"]))
        if fields["grade"] < settings.threshold:
            row.update(status="below-threshold", reason=f"overall {fields['grade']} < {settings.threshold}")

    async def summary_items(self, doc_index: int, doc: dict[str, Any], ctx: dict[str, str]) -> list[dict]:
        out = await self.engine.run(self.summary_job(doc, ctx))
        if out.status != "ok":
            self._failed(doc["id"], "summary", out.status, out.error)
            return []
        self.counts["summary_ok"] += 1
        prompt = load_prompt("summary")
        user = Template(prompt.item_user or "$title").substitute(title=ctx["title"])
        return [self._row(doc_index, -1_000_000, "summary", _item_id("summary", doc["id"], prompt.version,
                                                                     self.generator.name),
                          [{"role": "user", "content": user},
                           {"role": "assistant", "content": out.value.summary}],  # type: ignore[union-attr]
                          doc, char_start=0, char_end=min(len(doc["text"]), self.recipe.summary.input_chars),
                          generator=self.generator.name, prompt_version=prompt.version)]

    def metadata_items(self, doc_index: int, doc: dict[str, Any]) -> list[dict]:
        arxiv_id, paper = self.paper(doc)
        version, _ = metadata_templates()
        rows = []
        for j, (task, question, answer) in enumerate(metadata_pairs(metadata_fields(doc.get("title"), arxiv_id, paper))):
            rows.append(self._row(doc_index, -1000 + j, "metadata", _item_id("metadata", doc["id"], task, version),
                                  [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                                  doc, generator="catalog" if paper else "corpus", prompt_version=version))
        return rows

    async def document_items(self, doc_index: int, doc: dict[str, Any]) -> list[dict]:
        ctx = self.context(doc)
        coros = []
        if self.recipe.qa.enabled:
            coros += [self.passage_items(doc_index, doc, p, ctx) for p in self.passages(doc)]
        if self.recipe.summary.enabled:
            coros.append(self.summary_items(doc_index, doc, ctx))
        rows = [r for part in await asyncio.gather(*coros) for r in part]
        if self.recipe.metadata.enabled:
            rows += self.metadata_items(doc_index, doc)
        self.counts["documents"] += 1
        return rows

    async def generate(self, docs: list[dict[str, Any]], first_index: int) -> None:
        """One chunk of documents, all in flight together (the engine bounds the concurrency)."""
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.document_items(first_index + i, d)) for i, d in enumerate(docs)]
        except ExceptionGroup as group:  # report the cause (e.g. a Fatal), not the group
            while isinstance(group, ExceptionGroup):
                group = group.exceptions[0]
            raise group from None
        self.insert([r for t in tasks for r in t.result()])

    def insert(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = pa.Table.from_pylist(rows)
        self.ws.con.register("qa_items_new", table)
        cols = ", ".join(ITEM_COLUMNS)
        self.ws.con.execute(f"INSERT OR REPLACE INTO qa_items ({cols}) SELECT {cols} FROM qa_items_new")
        self.ws.con.unregister("qa_items_new")
        fault_point("qa-items")

    # -- selection and export ---------------------------------------------------------------------
    def mark(self, reasons: dict[str, str], status: str) -> None:
        if reasons:
            self.ws.con.register("qa_marks", pa.table({"id": list(reasons), "reason": list(reasons.values())}))
            self.ws.con.execute("UPDATE qa_items SET status = ?, reason = m.reason FROM qa_marks m "
                                "WHERE qa_items.id = m.id AND qa_items.out = ?", [status, self.out_key])
            self.ws.con.unregister("qa_marks")
        self.counts[f"dropped_{status}"] += len(reasons)

    def candidates(self, kinds: tuple[str, ...]) -> Iterator[tuple[str, list[dict[str, str]], int | None]]:
        """(id, messages, grade) of the items still in the running, streamed in output order."""
        cursor = self.ws.con.cursor().execute(
            f"SELECT id, messages, grade FROM qa_items WHERE out = ? AND status = 'candidate' "
            f"AND kind IN ({', '.join('?' * len(kinds))}) ORDER BY doc_index, pos", [self.out_key, *kinds])
        while rows := cursor.fetchmany(10_000):
            yield from ((i, json.loads(m), g) for i, m, g in rows)

    def select(self, decontaminator: Any) -> None:
        from astrodata.qa.mix import contaminated_items, duplicate_items, pick, quotas

        d = self.recipe.dedup
        if d.exact or d.near_threshold is not None:
            questions = ((i, m[0]["content"], g) for i, m, g in self.candidates(("qa",)))
            self.mark(duplicate_items(self.ws.con, questions, d.near_threshold, d.ngram,
                                      self.ws.path("qa", f"questions-{self.run.run_id}.parquet")), "duplicate")
        if decontaminator is not None:
            generated = ((i, "\n".join(t["content"] for t in m))
                         for i, m, _ in self.candidates(("qa", "summary", "metadata")))
            self.mark(contaminated_items(decontaminator, generated), "contaminated")
        by_kind: dict[str, list[str]] = {}
        for kind, item_id in self.ws.con.execute(
                "SELECT kind, id FROM qa_items WHERE out = ? AND status = 'candidate'", [self.out_key]).fetchall():
            by_kind.setdefault(kind, []).append(item_id)
        quota = quotas({k: len(v) for k, v in by_kind.items()}, self.recipe.mix.proportions, self.recipe.mix.total)
        kept = {i for k, ids in by_kind.items() for i in pick(ids, quota.get(k, 0), self.recipe.mix.seed)}
        self.mark({i: "outside the mix quota" for ids in by_kind.values() for i in ids if i not in kept}, "not-mixed")
        self.ws.con.execute("UPDATE qa_items SET status = 'kept' WHERE out = ? AND status = 'candidate'", [self.out_key])

    def export(self) -> dict[str, int]:
        """Write the kept items to OUT/data through a temporary folder swapped in at the end."""
        for leftover in [*self.out.glob(".partial-*"), *self.out.glob(".old-*")]:  # of killed runs (we hold the lock)
            shutil.rmtree(leftover, ignore_errors=True)
        partial = self.out / f".partial-{self.run.run_id}"
        per_kind: Counter[str] = Counter()
        cursor = self.ws.con.execute(
            "SELECT id, kind, messages, source_id, doc_id, passage_id, char_start, char_end, generator, "
            "prompt_version, grade, scores, judge FROM qa_items WHERE out = ? AND status = 'kept' "
            "ORDER BY doc_index, pos, id", [self.out_key])
        names = [c[0] for c in cursor.description]
        with ShardWriter(partial, QA_SCHEMA, rows_per_shard=50_000, prefix="qa") as writer:
            while batch := cursor.fetchmany(10_000):
                for values in batch:
                    row = dict(zip(names, values, strict=True))
                    row["messages"] = json.loads(row["messages"])
                    row["scores"] = json.loads(row["scores"]) if row["scores"] else None
                    writer.add(row)
                    per_kind[row["kind"]] += 1
        fault_point("qa-out-partial")
        old = self.out / f".old-{self.run.run_id}"
        if (self.out / "data").exists():
            os.replace(self.out / "data", old)
            fault_point("qa-swap")
        os.replace(partial / "data", self.out / "data")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        return dict(per_kind)


async def probe_dialect(engine: Engine, backend: EndpointBackend) -> str:
    """The first dialect whose schema the server enforces: ask for a reply that only an enforced
    schema can produce (a fixed code word the prompt never mentions), else `none`."""
    from typing import Literal

    from pydantic import create_model

    probe = create_model("DialectProbe", code=(Literal["x7q2k", "w4z9m"], ...))
    for dialect in ("json_schema", "json_object_schema"):
        candidate = backend.with_dialect(dialect)
        job = Job(candidate, "probe", f"dialect {dialect}", [{"role": "user", "content": "Say hello."}],
                  probe, 16, repairs=0, attempts=2)
        if (await engine.run(job)).status == "ok":
            return dialect
    return "none"


def _backends(recipe: QARecipe) -> tuple[Backend, Backend | None]:
    g, j, e = recipe.generator, recipe.judge, recipe.engine
    generator = make_backend(g.model, g.endpoint, g.dialect, g.temperature, g.seed, e.timeout_s, g.context_tokens,
                             e.concurrency)
    if not j.enabled:
        return generator, None
    same_endpoint = j.endpoint in (None, g.endpoint)
    if (j.model in (None, g.model)) and same_endpoint:
        judge_method(j, generator)
        return generator, generator
    judge_dialect = j.dialect or (g.dialect if same_endpoint else "auto")
    judge = make_backend(j.model or g.model, j.endpoint or g.endpoint, judge_dialect, g.temperature, g.seed,
                         e.timeout_s, None, e.concurrency)
    judge_method(j, judge)  # ValueError now, not at the first pair
    return generator, judge


def _resolve(recipe: QARecipe, endpoint: str | list[str] | None, model: str | None,
             dialect: str | None) -> QARecipe:
    """The recipe with the command-line overrides of the generator, validated like the file's values."""
    from pydantic import ValidationError

    from astrodata.core.config import describe_errors

    update = {k: v for k, v in (("endpoint", endpoint), ("model", model), ("dialect", dialect)) if v is not None}
    try:
        g = type(recipe.generator).model_validate({**recipe.generator.model_dump(), **update})
    except ValidationError as exc:
        raise QAInputError(describe_errors(exc, {k: f"--{k}" for k in update})) from None
    if g.endpoint and g.model == "embedded":
        raise QAInputError("--endpoint needs --model NAME (the model name the server knows)")
    if isinstance(g.endpoint, list) and len(g.endpoint) > 1:  # engine.concurrency holds per endpoint
        e = recipe.engine.model_copy(update={"concurrency": recipe.engine.concurrency * len(g.endpoint)})
        return recipe.model_copy(update={"generator": g, "engine": e})
    return recipe.model_copy(update={"generator": g})


def build_qa(corpus: str | os.PathLike, out: str | os.PathLike, workdir: str | os.PathLike = DEFAULT_WORKDIR,
             limit: int | None = None, endpoint: str | list[str] | None = None, model: str | None = None,
             recipe: str | os.PathLike | None = None, dialect: str | None = None,
             batch_write: str | os.PathLike | None = None,
             batch_ingest: str | os.PathLike | list[str | os.PathLike] | None = None, batch_split: int | None = None,
             progress: bool = True, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the QA dataset from a corpus; returns the stats also written to OUT/stats.json.

    With `batch_write`, requests without a cached reply are written to that Batch API file instead
    of being sent (and no output is written until every reply is in), split into `batch_split` files
    when given (one per node); `batch_ingest` (files or folders) first stores
    a Batch API result file's replies in the cache. Both together: ingest a round, write the next.
    """
    t0 = time.monotonic()
    corpus, out = Path(corpus), Path(out)
    if limit is not None and limit < 0:
        raise QAInputError(f"--limit: must be >= 0, got {limit}")
    rec = _resolve(load_qa_recipe(recipe, overrides), endpoint, model, dialect)
    if not (corpus / "data").is_dir() or not shard_files(corpus):
        raise QAInputError(f"corpus {corpus}: no data/*.parquet shards (is it a build-corpus output folder?)")
    source, target, work = corpus.resolve(), out.resolve(), Path(workdir).resolve()
    if target == source or source in target.parents or target in source.parents:
        raise QAInputError(f"--out {out}: must differ from --corpus and lie neither inside nor above it")
    if work == source or source in work.parents:  # the catalog would be published with the corpus
        raise QAInputError(f"--workdir {workdir}: lies in the --corpus folder {corpus}; put the workspace elsewhere")
    if (batch_write or batch_ingest) and rec.generator.endpoint is None:
        raise QAInputError("batch mode needs --endpoint and --model (the server the batch will run on)")
    if batch_write and rec.generator.dialect == "auto":
        raise QAInputError("batch mode cannot probe the server: give --dialect json_schema|json_object_schema|none")
    for path, option in ((Path(workdir), "--workdir"), (out, "--out"), (corpus, "--corpus")):
        require_utf8_path(path, option)
    cwd = Path.cwd().resolve()
    if out.resolve() in (cwd, *cwd.parents) or out.resolve() == Path(workdir).resolve():
        raise QAInputError(f"--out {out}: must be a folder of its own, not the current folder, the workdir or "
                           "a folder above them")
    generator, judge = _backends(rec)
    with interrupt_handling(), output_lock(out):
        ws = Workspace(workdir)
        try:
            config = {"corpus": str(corpus), "out": str(out), "limit": limit, "batch_write": str(batch_write or ""),
                      "batch_ingest": str(batch_ingest or ""), "batch_split": batch_split,
                      "recipe": rec.model_dump(mode="json")}
            with ws.run("build-qa", config) as run:
                ws.con.execute(REQUESTS_SCHEMA + ITEMS_SCHEMA)
                stats = _build(ws, run, rec, corpus, out, limit, generator, judge, batch_write, batch_ingest,
                               progress)
                if batch_split and stats.get("batch_files"):
                    stats["batch_files"] = [str(p) for p in split_batch(list(map(Path, stats["batch_files"])),
                                                                        batch_split)]
                stats["seconds"] = round(time.monotonic() - t0, 2)
                stats["failure"] = failure_verdict(stats["engine"], rec.engine.max_failed_share)
                run.counts.update(stats)
            if "output" in stats:
                write_stats(out, stats)
                fault_point("qa-stats")
            return stats
        finally:
            ws.close()


def failure_verdict(engine: dict[str, Any], max_failed_share: float | None) -> str | None:
    """Why the run must end non-zero, or None: more than `max_failed_share` of this run's requests
    failed for good (failed after retries, or rejected); with None, only when every one did."""
    failed = engine["failed"] + engine["rejected"]
    finished = failed + engine["replies_ok"] + engine["replies_invalid"]
    if not failed:
        return None
    share = failed / finished
    if (share > max_failed_share) if max_failed_share is not None else failed == finished:
        limit = "every request" if max_failed_share is None else f"over {max_failed_share:.0%} of requests"
        return f"{failed} of {finished} requests failed ({share:.0%}; the run fails when {limit} fail)"
    return None


def _build(ws: Workspace, run: Run, rec: QARecipe, corpus: Path, out: Path, limit: int | None,
           generator: Backend, judge: Backend | None, batch_write: str | os.PathLike | None,
           batch_ingest: str | os.PathLike | list[str | os.PathLike] | None, progress: bool) -> dict[str, Any]:
    """One build with its engine: the stages, then the engine's writer closed (replies committed)."""
    engine = Engine(ws.con, rec.engine, rec.prices, run.run_id, progress=progress, collect=bool(batch_write),
                    run=run)
    try:
        return _stages(ws, run, rec, corpus, out, limit, generator, judge, batch_write, batch_ingest, engine)
    except BaseException as exc:  # SIGINT/SIGTERM: every reply already in is committed by engine.close()
        if not is_interrupt(exc):
            raise
        s = engine.stats
        raise Interrupted(s.replies_ok + s.replies_invalid + s.failed + s.rejected) from None
    finally:
        engine.close()


def _stages(ws: Workspace, run: Run, rec: QARecipe, corpus: Path, out: Path, limit: int | None,
            generator: Backend, judge: Backend | None, batch_write: str | os.PathLike | None,
            batch_ingest: str | os.PathLike | list[str | os.PathLike] | None, engine: Engine) -> dict[str, Any]:
    """The stages in order: plan (context check), ingest, generate, then batch files or select + export."""
    builder = Builder(ws, run, rec, corpus, out, limit, generator, judge, engine)
    n_docs = builder.check_context()
    stats: dict[str, Any] = {"documents": n_docs, "generator": generator.name,
                             "judge": judge.name if judge else None}
    if batch_ingest:
        stats["batch_ingested"] = ingest_batch(ws.con, batch_ingest, rec.prices, rec.batch_discount, run.run_id)
    ws.con.execute("DELETE FROM qa_items WHERE out = ?", [builder.out_key])
    with asyncio_sigint():
        stats["dialect"] = asyncio.run(generate_all(builder, n_docs, check_backends=not batch_write))
    # the endpoints' one-token probes (`check`): real requests, paid, but not in the request cache
    stats["probe_requests"] = sum(getattr(b, "probes", 0) for b in {id(b): b for b in (generator, judge) if b}.values())
    engine.writer.drain()
    stats["engine"] = engine.summary()
    if isinstance(builder.generator, EndpointPool):
        stats["pool"] = builder.generator.describe()
    if batch_write and engine.pending:
        files = write_batch(batch_write, engine.pending)
        stats.update(builder.counts, batch_requests=len(engine.pending), batch_files=[str(f) for f in files])
        return stats
    return {**stats, **select_and_export(builder, n_docs)}


async def choose_dialects(builder: Builder) -> None:
    """With `dialect: auto`, probe the endpoint and give the generator (and a judge on the same
    endpoint without its own dialect) the dialect the server enforces."""
    rec, generator, judge = builder.recipe, builder.generator, builder.judge
    if not (isinstance(generator, EndpointBackend | EndpointPool) and rec.generator.dialect == "auto"):
        return
    builder.generator = generator.with_dialect(await probe_dialect(builder.engine, generator))
    if judge is generator:
        builder.judge = builder.generator
    elif isinstance(judge, EndpointBackend | EndpointPool) and judge.endpoint == generator.endpoint \
            and rec.judge.dialect is None:
        builder.judge = judge.with_dialect(builder.generator.dialect)


async def generate_all(builder: Builder, n_docs: int, check_backends: bool) -> str:
    """Every document's requests, chunk by chunk (replies are cached as they come); returns the
    generator's dialect."""
    backends = list({id(b): b for b in (builder.generator, builder.judge) if b is not None}.values())
    engine = builder.engine
    try:
        if check_backends:
            for backend in backends:
                await backend.check()
        await choose_dialects(builder)
        with engine:
            docs = iter_docs(builder.corpus, builder.limit)
            start = 0
            while chunk := list(islice(docs, builder.recipe.engine.chunk_docs)):
                engine.progress.update(engine.task_id, description=f"documents {start + len(chunk)}/{n_docs}")
                await builder.generate(chunk, start)
                start += len(chunk)
        return builder.generator.dialect
    finally:
        for backend in backends:
            await backend.aclose()


def select_and_export(builder: Builder, n_docs: int) -> dict[str, Any]:
    """Instruct rows, question dedup, decontamination and the mix over `qa_items`, then the output shards."""
    from astrodata.qa.instruct import instruct_items

    ws, run, rec = builder.ws, builder.run, builder.recipe
    decontaminator = None
    if rec.decontam.benchmarks:
        from astrodata.corpus.decontam import Decontaminator

        decontaminator = Decontaminator.from_files(rec.decontam.benchmarks, "drop", rec.decontam.ngram,
                                                   rec.decontam.min_words)
    instruct_counts: Counter[str] = Counter()
    items = instruct_items(rec.instruct, decontaminator,
                           lambda row_id, reason: run.error(f"instruct:{row_id}", "qa-instruct", reason),
                           instruct_counts)
    position = 0
    while batch := list(islice(items, 10_000)):  # streamed: the 7M rows are never all in memory
        builder.insert([builder._row(n_docs, position + i, "instruct", it["id"], it["messages"], None,
                                     source_id=it["source_id"], generator=it["generator"])
                        for i, it in enumerate(batch)])
        position += len(batch)
    stats: dict[str, Any] = {"instruct": dict(instruct_counts)}
    builder.select(decontaminator)
    stats.update(builder.counts)
    stats["items_by_status"] = dict(ws.con.execute(
        "SELECT status, count(*) FROM qa_items WHERE out = ? GROUP BY status ORDER BY status",
        [builder.out_key]).fetchall())
    stats["output"] = builder.export()
    return stats
