import duckdb
import pytest

from astrodata.core.workspace import Workspace


def test_schema_is_idempotent_and_queryable(tmp_path):
    Workspace(tmp_path / "w").close()
    ws = Workspace(tmp_path / "w")  # second open must not fail or duplicate anything
    tables = {r[0] for r in ws.con.execute("SHOW TABLES").fetchall()}
    assert {"runs", "papers", "documents", "errors"} <= tables
    ws.close()


def test_run_and_document_records(workspace):
    with workspace.run("build-corpus", {"workers": 2, "api_key": "sk-secret"}) as run:
        workspace.upsert_document("arxiv:1", source="arxiv", source_id="1", stage="latex", status="done", words=10)
        workspace.upsert_document("arxiv:1", source="arxiv", source_id="1", stage="latex", status="done", words=12)
        run.error("arxiv:2", "unpack", "path traversal", "member ../x")
        run.counts["done"] = 1
    con = workspace.con
    assert con.execute("SELECT count(*), max(words) FROM documents").fetchall() == [(1, 12)]
    status, counts, config = con.execute("SELECT status, counts, config FROM runs").fetchall()[0]
    assert status == "done" and '"done": 1' in counts
    assert "sk-secret" not in config and "<redacted>" in config
    assert workspace.errors()[0]["reason"] == "path traversal"


def test_failed_run_is_marked(workspace):
    with pytest.raises(RuntimeError):
        with workspace.run("x"):
            raise RuntimeError("boom")
    assert workspace.con.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def test_path_refuses_escape(workspace):
    assert workspace.path("corpus", "data").is_relative_to(workspace.root)
    with pytest.raises(ValueError):
        workspace.path("..", "outside")


def test_unknown_column_rejected(workspace):
    with pytest.raises(ValueError, match="unknown document columns"):
        workspace.upsert_document("d", source="arxiv", source_id="d", stage="s", status="done", bogus=1)


def test_catalog_is_a_real_duckdb_file(workspace):
    workspace.upsert_document("d", source="arxiv", source_id="d", stage="s", status="done")
    workspace.close()
    con = duckdb.connect(str(workspace.catalog_path), read_only=True)
    assert con.execute("SELECT doc_id FROM documents").fetchall() == [("d",)]
