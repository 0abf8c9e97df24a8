"""The workspace: one folder holding `catalog.duckdb` and every output of a build.

The catalog is the user-facing record of what happened (runs, papers, documents, errors,
generation requests, costs); people query it with SQL, so column names are meant to be read.
DuckDB allows one writing process per file: worker processes compute, the parent writes.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from astrodata.core.files import pid_alive

DEFAULT_WORKDIR = Path("astrodata-work")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      VARCHAR PRIMARY KEY,
    command     VARCHAR NOT NULL,
    config      JSON,
    started_at  TIMESTAMP NOT NULL,
    ended_at    TIMESTAMP,
    status      VARCHAR NOT NULL,          -- running | done | failed | interrupted
    counts      JSON
);
CREATE TABLE IF NOT EXISTS papers (
    arxiv_id          VARCHAR PRIMARY KEY, -- bare id without version, e.g. 2401.01234 or astro-ph/0601001
    latest_version    INTEGER,
    versions          JSON,                -- [{"version": 1, "date": "...", "size": "..."}]
    title             VARCHAR,
    authors           VARCHAR[],
    abstract          VARCHAR,
    categories        VARCHAR[],
    primary_category  VARCHAR,
    doi               VARCHAR,
    journal_ref       VARCHAR,
    license           VARCHAR,
    comments          VARCHAR,
    published         DATE,
    updated           DATE,
    harvested_from    VARCHAR,             -- api | oai-arXiv | oai-arXivRaw | snapshot
    harvested_at      TIMESTAMP
);
CREATE TABLE IF NOT EXISTS documents (
    doc_id          VARCHAR PRIMARY KEY,   -- e.g. arxiv:2401.01234v2
    source          VARCHAR NOT NULL,      -- arxiv | wikipedia | textbook
    source_id       VARCHAR NOT NULL,
    stage           VARCHAR NOT NULL,      -- last stage reached
    status          VARCHAR NOT NULL,      -- done | error | skipped | dropped | pending (shard being written)
    run_id          VARCHAR,
    words           BIGINT,
    n_tokens        BIGINT,
    residue_per_1k  DOUBLE,
    macros_expanded INTEGER,
    missing_inputs  VARCHAR[],
    encoding        VARCHAR,
    seconds         DOUBLE,
    error           VARCHAR,
    details         JSON,
    updated_at      TIMESTAMP
);
CREATE TABLE IF NOT EXISTS losses (      -- what a converter met and could not render faithfully
    doc_id   VARCHAR NOT NULL,
    run_id   VARCHAR,
    kind     VARCHAR NOT NULL,             -- command | environment | math | definition | conditional |
                                           -- math-symbol | expansion-limit | template
    name     VARCHAR NOT NULL,             -- command or template name, environment, e.g. tikzpicture, val
    count    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS errors (
    run_id   VARCHAR,
    doc_id   VARCHAR,
    stage    VARCHAR NOT NULL,
    reason   VARCHAR NOT NULL,
    detail   VARCHAR,
    logged_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS publishes (     -- one row per `astrodata publish` (never the token)
    published_at TIMESTAMP NOT NULL,
    repo_id      VARCHAR NOT NULL,         -- OWNER/NAME on the Hub
    repo_type    VARCHAR NOT NULL,         -- dataset | model
    kind         VARCHAR NOT NULL,         -- corpus | qa | report | model
    revision     VARCHAR NOT NULL,
    commit_id    VARCHAR,                  -- the Hub commit holding the files
    new_commit   BOOLEAN,                  -- false when the folder was unchanged (no commit made)
    private      BOOLEAN,
    files        INTEGER,
    bytes        BIGINT,
    url          VARCHAR
);
CREATE TABLE IF NOT EXISTS stage_runs (  -- one row per stage of `astrodata run` (astrodata/run/)
    run_id        VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,      -- harvest | corpus | qa | cpt | sft | merge | eval | report | cards | publish
    status        VARCHAR NOT NULL,      -- running | done | failed | submitted
    settings_hash VARCHAR NOT NULL,      -- sha256 of the stage's resolved settings
    inputs_hash   VARCHAR NOT NULL,      -- sha256 of the settings hash and every input's fingerprint
    settings      JSON,
    inputs        JSON,                  -- {name: fingerprint}
    outputs       JSON,                  -- {name: {"path": ..., "fingerprint": ...}}
    figures       JSON,                  -- key figures shown in the run summary
    started_at    TIMESTAMP NOT NULL,
    ended_at      TIMESTAMP,
    seconds       DOUBLE,
    error         VARCHAR,
    PRIMARY KEY (run_id, stage)
);
"""

DOCUMENT_COLUMNS = (
    "source", "source_id", "stage", "status", "run_id", "words", "n_tokens", "residue_per_1k",
    "macros_expanded", "missing_inputs", "encoding", "seconds", "error", "details",
)


SECRET_WORDS = ("key", "token", "secret", "password", "authorization")


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """Drop secret-looking values so API keys and Hub tokens never reach the catalog."""
    return {
        k: ("<redacted>" if any(w in k.lower() for w in SECRET_WORDS) and v else
            redact(v) if isinstance(v, dict) else v)
        for k, v in config.items()
    }


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Workspace:
    """A work folder and its DuckDB catalog. Every path a stage writes comes from `path()`."""

    def __init__(self, root: str | os.PathLike = DEFAULT_WORKDIR):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.catalog_path = self.root / "catalog.duckdb"
        self.con = duckdb.connect(str(self.catalog_path))
        self.con.execute(SCHEMA)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, *parts: str) -> Path:
        """A path inside the workspace; refuses anything that would land outside it."""
        p = (self.root.joinpath(*parts)).resolve()
        if p != self.root and self.root not in p.parents:
            raise ValueError(f"path escapes the workspace: {'/'.join(parts)}")
        return p

    # -- runs ---------------------------------------------------------------------------
    @contextmanager
    def run(self, command: str, config: dict[str, Any] | None = None) -> Iterator[Run]:
        """Record a run from start to end; the body fills `run.counts`."""
        run = Run(self, command, config or {})
        try:
            yield run
        except KeyboardInterrupt:  # SIGINT/SIGTERM: finished work is kept, a re-run resumes
            run.finish("interrupted")
            raise
        except BaseException:
            run.finish("failed")
            raise
        run.finish("done")

    # -- documents and errors -----------------------------------------------------------
    def upsert_document(self, doc_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(DOCUMENT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown document columns: {sorted(unknown)}")
        if "details" in fields and not isinstance(fields["details"], str | None):
            fields["details"] = json.dumps(fields["details"], default=str)
        cols = ["doc_id", *fields, "updated_at"]
        values = [doc_id, *fields.values(), utc_now()]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
        self.con.execute(
            f"INSERT INTO documents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT (doc_id) DO UPDATE SET {updates}",
            values,
        )

    def record_error(
        self, doc_id: str | None, stage: str, reason: str, detail: str = "", run_id: str | None = None
    ) -> None:
        self.con.execute(
            "INSERT INTO errors VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, doc_id, stage, reason, detail[:2000], utc_now()],
        )

    def record_losses(self, doc_id: str, losses: Mapping[tuple[str, str], int], run_id: str | None = None) -> None:
        """Replace `doc_id`'s rows in `losses` with these (kind, name) -> count."""
        self.con.execute("DELETE FROM losses WHERE doc_id = ?", [doc_id])
        rows = [[doc_id, run_id, kind, name, int(n)] for (kind, name), n in losses.items() if n]
        if rows:
            self.con.executemany("INSERT INTO losses VALUES (?, ?, ?, ?, ?)", rows)

    def record_stage_run(self, run_id: str, stage: str, **fields: Any) -> None:
        """Insert or update one stage's row of `stage_runs` (JSON fields may be given as Python objects)."""
        fields = {k: json.dumps(v, default=str) if k in ("settings", "inputs", "outputs", "figures") else v
                  for k, v in fields.items()}
        cols = ["run_id", "stage", *fields]
        updates = ", ".join(f"{c} = excluded.{c}" for c in fields) or "stage = excluded.stage"
        self.con.execute(
            f"INSERT INTO stage_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT (run_id, stage) DO UPDATE SET {updates}", [run_id, stage, *fields.values()])

    def last_stage_run(self, stage: str) -> dict[str, Any] | None:
        """The newest `stage_runs` row of `stage` (JSON fields decoded), or None."""
        cur = self.con.execute("SELECT * FROM stage_runs WHERE stage = ? ORDER BY started_at DESC LIMIT 1", [stage])
        rows = cur.fetchall()
        if not rows:
            return None
        row = dict(zip([d[0] for d in cur.description], rows[0], strict=True))
        for k in ("settings", "inputs", "outputs", "figures"):
            row[k] = json.loads(row[k]) if row[k] else None
        return row

    def errors(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT run_id, doc_id, stage, reason, detail FROM errors"
        rows = self.con.execute(q + (" WHERE run_id = ?" if run_id else ""), [run_id] if run_id else []).fetchall()
        return [dict(zip(("run_id", "doc_id", "stage", "reason", "detail"), r, strict=True)) for r in rows]


class Run:
    """One command invocation as recorded in the `runs` table.

    Beside the catalog row, the run keeps a small JSON file, `runs/<run_id>.json` in the workspace
    (command, status, per-stage done/total/failures, start and last update), replaced atomically
    on every write. DuckDB lets no other process open a catalog while a run holds it, so this file
    is what `astrodata status` reads to show a run in progress.
    """

    def __init__(self, ws: Workspace, command: str, config: dict[str, Any]):
        self.ws = ws
        self.command = command
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.counts: dict[str, Any] = {}
        self.started_at = utc_now()
        self.status_path = ws.path("runs", f"{self.run_id}.json")
        self.stages: dict[str, dict[str, Any]] = {}
        ws.con.execute(
            "INSERT INTO runs (run_id, command, config, started_at, status) VALUES (?, ?, ?, ?, 'running')",
            [self.run_id, command, json.dumps(redact(config), default=str), self.started_at],
        )
        self.write_status("running")

    def write_status(self, status: str = "running", stages: dict[str, dict[str, Any]] | None = None) -> None:
        """Replace `runs/<run_id>.json`; `stages` maps a stage to {done, total, failures}."""
        if stages is not None:
            self.stages = stages
        record = {"run_id": self.run_id, "command": self.command, "status": status, "pid": os.getpid(),
                  "started_at": self.started_at.isoformat(timespec="seconds"),
                  "updated_at": utc_now().isoformat(timespec="seconds"), "stages": self.stages}
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_name(f".{self.status_path.name}.tmp")
        tmp.write_text(json.dumps(record, default=str))
        os.replace(tmp, self.status_path)

    def finish(self, status: str) -> None:
        self.ws.con.execute(
            "UPDATE runs SET ended_at = ?, status = ?, counts = ? WHERE run_id = ?",
            [utc_now(), status, json.dumps(self.counts, default=str), self.run_id],
        )
        self.write_status(status)

    def error(self, doc_id: str | None, stage: str, reason: str, detail: str = "") -> None:
        self.ws.record_error(doc_id, stage, reason, detail, run_id=self.run_id)


def run_statuses(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The runs' status files in a workspace (`runs/*.json`), oldest first, read without opening
    the catalog (so it works while a run holds DuckDB's lock). A run marked `running` whose process
    is gone is reported as `stopped` (killed, or the machine went down)."""
    records = []
    for path in sorted(Path(root, "runs").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced atomically, so only a foreign file can be unreadable
        if record.get("status") == "running" and not pid_alive(record.get("pid")):
            record["status"] = "stopped"
        records.append(record)
    return sorted(records, key=lambda r: r.get("started_at") or "")

