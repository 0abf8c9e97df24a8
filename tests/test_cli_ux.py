"""What a newcomer meets on the command line: --version, flags, options checked before any model
loads, configs by name, a relocatable lm-eval export, status while a run holds the catalog, plain
progress lines in logs, report costs."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import version

import duckdb
import pytest
from conftest import FIXTURES, ROOT
from lm_eval_yaml import load_lm_eval_yaml
from rich.console import Console
from typer.testing import CliRunner

from astrodata.cli import app
from astrodata.core.progress import RunProgress
from astrodata.core.workspace import Workspace

KEYED = FIXTURES / "mcq" / "astro_keyed.jsonl"
ANSI = re.compile(r"\x1b\[")


def cli(*args: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "astrodata.cli", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def no_model_loads(monkeypatch):
    """Every way a command could load a model raises: a test using this proves it failed before."""
    import benchmarks.astromlab1
    import training.cpt
    import training.sft

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(benchmarks.astromlab1, "load_backend", refuse)
    monkeypatch.setattr(training.cpt, "load_model", refuse)
    monkeypatch.setattr(training.sft, "load_model", refuse)


def test_version_and_flags():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"astrodata {version('astrodata')}"
    help_text = CliRunner().invoke(app, ["build-corpus", "--help"], terminal_width=200).output
    row = next(line for line in help_text.splitlines() if "--from-catalog" in line)
    assert "--no-from-catalog" in row and "<bool>" not in row


@pytest.mark.parametrize(("args", "expected"), [
    (["--method", "base-tokn"], "'base-tokn' is not one of"),
    (["--method", "base-token", "--dtype", "float64"], "'float64' is not one of"),
    (["--method", "base-token", "--batch-size", "0"], "greater than or equal to 1"),
    (["--method", "base-token", "--prompts", "missing.yaml"], "missing.yaml"),
])
def test_eval_options_fail_before_any_model_loads(tmp_path, no_model_loads, args, expected):
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["eval", "--data", str(KEYED), "--model", "embedded",
                                      "--out", str(tmp_path / "out"), *args], terminal_width=200)
    elapsed = time.perf_counter() - t0
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "out").exists()
    assert elapsed < 2, f"{elapsed:.1f} s"  # the parser refuses it: no import of torch, no data read


def test_eval_prompt_file_checked_before_the_model(tmp_path, no_model_loads):
    bad = tmp_path / "prompts.yaml"
    bad.write_text("base: {}\n")
    result = CliRunner().invoke(app, ["eval", "--data", str(KEYED), "--model", "embedded", "--method", "base-token",
                                      "--out", str(tmp_path / "out"), "--prompts", str(bad)], terminal_width=300)
    assert result.exit_code == 1 and f"prompt file {bad}: missing instruct" in result.output, result.output


def test_training_config_by_name_from_another_folder(tmp_path, monkeypatch, no_model_loads):
    monkeypatch.chdir(tmp_path)  # not the repository: the shipped configs are found by name
    runner = CliRunner()
    for stage, name in (("cpt", "smollm2-cpu-cpt"), ("sft", "smollm2-cpu-sft.yaml")):
        result = runner.invoke(app, ["train", stage, "--config", name, f"dataset={tmp_path / 'none'}",
                                     f"output_dir={tmp_path / 'o'}"], terminal_width=300)
        # the config loaded (its dataset override is what fails), and before any model (no_model_loads)
        assert result.exit_code == 1 and f"{tmp_path / 'none'}: no data/*.parquet shards" in result.output, \
            result.output
    result = runner.invoke(app, ["train", "cpt", "--config", "smollm2-cpu-cpd"], terminal_width=300)
    assert result.exit_code == 1 and "shipped: astrosage-8b-cpt" in result.output and "smollm2-cpu-cpt" in result.output
    result = runner.invoke(app, ["train", "xpt", "--config", "smollm2-cpu-cpt"], terminal_width=300)
    assert result.exit_code == 2 and "'xpt' is not one of" in result.output


def test_lm_eval_export_moves_and_prints_the_command(tmp_path):
    result = CliRunner().invoke(app, ["export-lm-eval", "--data", str(KEYED), "--out", str(tmp_path / "task"),
                                      "--few-shot", "1"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert f"lm_eval --model hf --model_args pretrained=MODEL --tasks astromlab1 --include_path {tmp_path / 'task'}" \
        in result.output  # printed whole, not wrapped at 80 columns
    moved = tmp_path / "elsewhere" / "task"
    shutil.move(tmp_path / "task", moved)
    text = (moved / "astromlab1.yaml").read_text()
    assert str(tmp_path) not in text and "/" not in text.split("custom_dataset:")[1]
    cfg = load_lm_eval_yaml(moved / "astromlab1.yaml")
    splits = cfg["custom_dataset"](**cfg["metadata"])  # as lm-eval calls it
    rows = [json.loads(line) for line in KEYED.read_text().splitlines() if line.strip()]
    assert splits[cfg["test_split"]].num_rows == len(rows)
    assert splits["test"][0]["question"] == rows[0]["question"]


def test_status_while_a_run_holds_the_catalog(tmp_path):
    work = tmp_path / "work"
    with Workspace(work) as ws, ws.run("build-qa", {}) as run:
        locked = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(ws.catalog_path)!r})"],
                                capture_output=True, text=True)
        assert locked.returncode != 0 and "lock" in locked.stderr.lower()  # DuckDB: one process at a time
        with RunProgress(run=run, console=Console(file=io.StringIO()), interval_s=3600) as progress:
            task = progress.add_task("requests", total=10, failures=0)
            progress.advance(task, 3)
            progress.update(task, failures=1)
            progress.report()
            result = cli("status", "--workdir", str(work))
        assert result.returncode == 0, result.stderr
        assert f"{run.run_id}  build-qa  running" in result.stdout
        assert "requests: 3/10 done, 1 failures" in result.stdout
    result = cli("status", "--workdir", str(work))  # the run is over: its final state
    assert f"{run.run_id}  build-qa  done" in result.stdout and "requests: 3/10 done" in result.stdout
    with duckdb.connect(str(work / "catalog.duckdb")) as con:
        assert con.execute("SELECT status FROM runs WHERE run_id = ?", [run.run_id]).fetchall() == [("done",)]
    assert cli("status", "--workdir", str(tmp_path / "nowhere")).returncode == 1


def test_plain_progress_lines_off_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=40)
    with RunProgress(console=console, interval_s=0.05) as progress:
        task = progress.add_task("arxiv papers", total=200, failures=0)
        for _ in range(120):
            progress.advance(task)
        progress.update(task, failures=2)
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and not ANSI.search(out.getvalue())  # several timed lines, no escape codes
    assert re.fullmatch(r"arxiv papers: 120/200 \(60%\), [\d.]+/s, ETA \d+:\d\d:\d\d, 2 failures", lines[-1]), lines
    assert all(len(line) > 40 for line in lines)  # one line each, not wrapped at the console width


def test_report_accepts_cost_zero_and_draws_runs_without_cost(tmp_path):
    import matplotlib

    from benchmarks.report import parse_costs, plot_score_vs_cost

    assert parse_costs(["local=0"]) == {"local": 0.0}
    entries = [
        {"label": "embedded (base-token)", "kind": "ours", "score": 31.5, "cost": None},
        {"label": "mine (generate)", "kind": "ours", "score": 40.0, "cost": 0.0},
        {"label": "GPT-4o", "kind": "published", "score": 80.4, "cost": 0.75, "open_weights": False},
        {"label": "Llama-3.1-8B-Instruct", "kind": "published", "score": 73.7, "cost": None},
    ]
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        svg = plot_score_vs_cost(entries, tmp_path)["svg"].read_text()
    assert "embedded (base-token) 31.5 (no --cost)" in svg  # a run without a cost: a score line
    assert "mine (generate)" in svg and "GPT-4o" in svg  # cost 0 placed on the axis beside a priced model
    result = CliRunner().invoke(app, ["report", str(FIXTURES / "lm_eval" / "results_astromlab1.json"), "--out",
                                      str(tmp_path / "cli"), "--cost", "GPT-4o=0"], terminal_width=300)
    assert result.exit_code == 0, result.output


def test_labels_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.report import separate_labels

    fig, ax = plt.subplots()
    ax.set_ylim(0, 100)
    texts = [ax.text(0.5, 50 + 0.2 * i, f"model {i} 50.{i}") for i in range(6)]
    texts += [ax.annotate(f"run {i}", (0.5, 50), textcoords="offset points", xytext=(6, 4)) for i in range(4)]
    renderer = fig.canvas.get_renderer()
    before = [t.get_window_extent(renderer) for t in texts]
    assert any(a.overlaps(b) for i, a in enumerate(before) for b in before[i + 1:])
    separate_labels(fig, texts)
    after = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(after) for b in after[i + 1:])
    plt.close(fig)


def test_sql_queries_the_catalog_as_the_readme_shows(tmp_path):
    work = tmp_path / "work"
    with Workspace(work) as ws:
        with ws.run("build-corpus", {}):
            pass
        ws.upsert_document("arxiv:a", source="arxiv", source_id="a", stage="extract", status="done")
        ws.upsert_document("arxiv:b", source="arxiv", source_id="b", stage="extract", status="error")
    result = cli("sql", "SELECT status, count(*) AS n FROM documents GROUP BY 1 ORDER BY 1", "--workdir", str(work),
                 "--csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["status,n", "done,1", "error,1"]
    table = cli("sql", "SELECT command, status FROM runs", "--workdir", str(work)).stdout
    assert "build-corpus" in table and "done" in table
    with Workspace(work):  # a run holds the catalog: a clear pointer to `status` instead of a DuckDB trace
        held = cli("sql", "SELECT 1", "--workdir", str(work))
    assert held.returncode == 1 and "held by a running command" in held.stderr and "astrodata status" in held.stderr


def test_a_build_in_a_log_reads_well(tmp_path):
    """stderr to a file, as in `make demo > log` or a cluster job: plain progress lines, one-line
    summary (not wrapped at 80 columns), then the next commands to try."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ASTRODATA_PROGRESS_INTERVAL": "0.2", "COLUMNS": "80"}
    result = subprocess.run([sys.executable, "-m", "astrodata.cli", "build-corpus", "--eprints",
                             str(FIXTURES / "eprints"), "--out", str(tmp_path / "corpus"), "--workdir",
                             str(tmp_path / "work")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert not ANSI.search(log) and "Loading weights" not in log and "it/s]" not in log  # no bars, no tqdm
    # the e-prints stream through the pool (their number is not known up front): done, rate, failures
    assert re.search(r"^arxiv: 3, [\d.]+/s, 0 failures$", log, re.M), log
    summary = next(line for line in log.splitlines() if line.startswith("build-corpus:"))
    assert len(summary) > 80 and summary.endswith(f"to {tmp_path / 'corpus'}")
    assert f"next: astrodata build-qa --corpus {tmp_path / 'corpus'} --out qa --limit 1" in log


def test_merge_hub_id_offline_is_one_clear_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "astrodata.cli", "merge", "--model", "no-such-org/no-such-model:0.5",
                             "--model", "embedded:0.5", "--out", str(tmp_path / "m")], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-org/no-such-model: not a local folder, and not in the Hub cache while offline" \
        in lines[0], result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_merge_accepts_embedded(tmp_path, embedded_model):
    from safetensors.torch import load_file

    result = CliRunner().invoke(app, ["merge", "--model", "embedded:0.5", "--model", f"{embedded_model}:0.5",
                                      "--out", str(tmp_path / "m")], terminal_width=300)
    assert result.exit_code == 0, result.output
    merged = load_file(next((tmp_path / "m").glob("*.safetensors")))
    original = load_file(next(embedded_model.glob("*.safetensors")))
    assert merged.keys() == original.keys()
    assert all(merged[k].equal(original[k]) for k in original)  # the mean of a model with itself is the model
