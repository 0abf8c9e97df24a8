"""`astrodata run`: recipes, the plan (what runs and why), skipping unchanged stages, re-running only
downstream of a change, the stage_runs record and the run report, on real stages."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml

from astrodata.core.workspace import Workspace
from astrodata.run.pipeline import run_pipeline
from astrodata.run.recipe import load_run_recipe
from tests.conftest import FIXTURES, ROOT


def test_shipped_recipes_load_by_name_and_refuse_unknown_keys(tmp_path):
    demo = load_run_recipe("demo.yaml")
    assert demo.merge.weight == 0.75 and demo.merge.instruct == "embedded"
    assert demo.qa.limit == 1 and demo.eval.baselines == ["embedded"]
    paper = load_run_recipe("astrosage-8b")
    assert paper.harvest.categories == ["astro-ph", "gr-qc"]
    assert (paper.harvest.date_from, paper.harvest.date_until) == ("2007-01-01", "2024-12-31")
    assert paper.merge.weight == 0.75 and paper.merge.instruct.endswith("Llama-3.1-8B-Instruct")
    assert len(paper.qa.endpoint) == 2
    assert load_run_recipe("demo", ["sft.settings.max_steps=7"]).sft.settings["max_steps"] == 7
    bad = tmp_path / "bad.yaml"
    bad.write_text("workdir: w\ncorpus: {eprints: [x], wokers: 2}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: corpus.wokers: Extra inputs are not permitted"):
        load_run_recipe(bad)
    with pytest.raises(FileNotFoundError, match="shipped recipes: astrosage-8b.yaml, demo.yaml"):
        load_run_recipe("nope.yaml")


def corpus_recipe(tmp_path, **corpus):
    return load_run_recipe("demo", {"workdir": str(tmp_path / "run"), "qa": None, "cpt": None, "sft": None,
                                    "merge": None, "eval": None, "report": None, "cards": None,
                                    "corpus": {"eprints": [str(FIXTURES / "eprints")], **corpus}})


def actions(steps):
    return {s.stage.name: s.outcome or s.action for s in steps}


def test_unchanged_stage_is_skipped_and_a_settings_change_reruns_it(tmp_path):
    recipe = corpus_recipe(tmp_path)
    ctx, steps = run_pipeline(recipe, progress=False, log=lambda _: None)
    assert actions(steps)["corpus"] == "ran"
    assert actions(steps)["qa"] == "off" and steps[2].reason == "not in the recipe"
    n_docs = steps[1].figures["documents"]
    assert n_docs == 3 and steps[1].figures["executor"] == "local"
    with Workspace(ctx.root) as ws:
        first = ws.last_stage_run("corpus")
    assert first["status"] == "done" and len(first["settings_hash"]) == 64
    assert set(first["inputs"]) == {"eprints[0]"} and first["outputs"]["corpus"]["fingerprint"]
    report = (ctx.root / "report.md").read_text()
    assert "| corpus | ran |" in report and "documents=3" in report
    assert "<table>" in (ctx.root / "report.html").read_text()

    # Same recipe again: nothing runs, and the plan says why.
    ctx2, steps = run_pipeline(recipe, progress=False, log=lambda _: None)
    assert actions(steps)["corpus"] == "up to date"
    assert steps[1].reason == f"settings and inputs unchanged since run {first['run_id']}"
    with Workspace(ctx.root) as ws:
        assert ws.con.execute("SELECT count(*) FROM stage_runs").fetchall() == [(1,)]

    # Moving phase 1 to another executor or more workers changes where it runs, not what it makes.
    _, steps = run_pipeline(corpus_recipe(tmp_path, workers=1, shards=4), dry_run=True)
    assert actions(steps)["corpus"] == "up to date"

    # A changed filter threshold re-runs the corpus afresh; the dry run names the setting.
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({"filters": {"min_words": 100000}}))
    changed = corpus_recipe(tmp_path, recipe=str(strict))
    _, steps = run_pipeline(changed, dry_run=True)
    assert steps[1].action == "run"
    assert "corpus_recipe.filters.min_words 50 -> 100000" in steps[1].reason
    _, steps = run_pipeline(changed, progress=False, log=lambda _: None)
    assert steps[1].figures["documents"] == 0 and steps[1].figures["dropped"] == 3  # every paper re-filtered


def test_missing_output_reruns_and_unknown_stage_is_refused(tmp_path):
    recipe = corpus_recipe(tmp_path)
    ctx, _ = run_pipeline(recipe, progress=False, log=lambda _: None)
    for f in (ctx.root / "corpus" / "data").iterdir():
        f.unlink()
    _, steps = run_pipeline(recipe, dry_run=True)
    assert steps[1].action == "run" and steps[1].reason == "output(s) changed or missing: corpus"
    with pytest.raises(ValueError, match="unknown stage 'sftt'"):
        run_pipeline(recipe, until="sftt", dry_run=True)


INSTRUCT = [
    [("human", "What is a parsec?"), ("gpt", "About 3.26 light years: the distance at which 1 au subtends 1 arcsecond.")],
    [("human", "Why do stars twinkle?"), ("gpt", "Turbulence in Earth's atmosphere bends their light back and forth.")],
    [("human", "What is a light year?"), ("gpt", "The distance light travels in one year, about 9.46e12 km.")],
    [("human", "Name the largest planet."), ("gpt", "Jupiter, with about 318 Earth masses.")],
    [("human", "What is redshift?"), ("gpt", "The stretching of light to longer wavelengths as a source recedes.")],
    [("human", "What powers the Sun?"), ("gpt", "Hydrogen fusing into helium in its core.")],
]


def full_recipe(tmp_path):
    src = tmp_path / "instruct.jsonl"
    src.write_text("".join(json.dumps({"id": i, "conversations": [{"from": f, "value": v} for f, v in conv]}) + "\n"
                           for i, conv in enumerate(INSTRUCT)))
    no_llm = {"qa": {"enabled": False}, "summary": {"enabled": False}, "judge": {"enabled": False},
              "metadata": {"enabled": False}, "instruct": {"source": str(src)}}
    train = {"max_steps": 1, "save_steps": 1, "logging_steps": 1, "seq_len": 128}
    return {"workdir": str(tmp_path / "run"), "corpus": {"eprints": [str(FIXTURES / "eprints")]},
            "qa": {"limit": 1, "settings": no_llm},
            "cpt": {"config": str(ROOT / "training/configs/smollm2-cpu-cpt.yaml"), "settings": train},
            "sft": {"config": str(ROOT / "training/configs/smollm2-cpu-sft.yaml"), "settings": train},
            "eval": {"data": str(FIXTURES / "mcq" / "astro_keyed.jsonl"), "limit": 4, "baselines": []}}


@pytest.mark.slow
def test_whole_pipeline_then_nothing_then_only_downstream_of_an_sft_change(tmp_path):
    recipe = load_run_recipe("demo", full_recipe(tmp_path))
    ctx, steps = run_pipeline(recipe, progress=False, log=lambda _: None)
    order = ["harvest", "corpus", "qa", "cpt", "sft", "merge", "eval", "report", "cards", "publish"]
    assert [s.stage.name for s in steps] == order
    assert actions(steps) == {"harvest": "off", "corpus": "ran", "qa": "ran", "cpt": "ran", "sft": "ran",
                              "merge": "ran", "eval": "ran", "report": "ran", "cards": "ran", "publish": "off"}
    assert steps[2].figures["items_instruct"] == 6 and steps[2].figures["requests_sent"] == 0
    assert steps[4].figures["steps"] == 1 and (ctx.root / "model" / "config.json").is_file()
    assert steps[6].figures["questions"] == 4 and 0 <= steps[6].figures["model_accuracy"] <= 1
    assert (ctx.root / "eval-report" / "report.md").is_file() and (ctx.root / "corpus" / "README.md").is_file()
    merged = json.loads((ctx.root / "model" / "config.json").read_text())
    assert merged["model_type"] == "llama"

    # The same recipe again, through the command line: nothing runs, and it says why.
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe.model_dump(mode="json")))
    cli = [sys.executable, "-m", "astrodata.cli", "run", str(recipe_file)]
    wide = {**os.environ, "COLUMNS": "400"}  # one table row per line
    again = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, check=True, env=wide)
    assert "0 stage(s) ran (none: every stage is up to date)" in again.stderr
    queries = [line[len("next: "):].split("   # ")[0] for line in again.stderr.splitlines()
               if line.startswith("next: astrodata sql")]
    assert len(queries) == 2
    for query in queries:  # the suggested next commands run as printed
        argv = shlex.split(query)
        shown = subprocess.run([sys.executable, "-m", "astrodata.cli", *argv[1:]], capture_output=True, text=True,
                               cwd=ROOT, env=wide)
        assert shown.returncode == 0 and shown.stdout.strip(), shown.stderr
    assert again.stdout.count("settings and inputs unchanged since run") == 8

    # One SFT setting changed: the plan names it, and only SFT and what lies downstream re-run.
    plan = subprocess.run([*cli, "sft.settings.learning_rate=1e-4", "--dry-run"], capture_output=True, text=True,
                          cwd=ROOT, check=True, env=wide).stdout
    assert "learning_rate 5e-05 -> 0.0001" in plan and "upstream sft re-runs" in plan
    _, steps = run_pipeline(load_run_recipe(recipe_file, ["sft.settings.learning_rate=1e-4"]), progress=False,
                            log=lambda _: None)
    assert [s.stage.name for s in steps if s.outcome == "ran"] == ["sft", "merge", "eval", "report", "cards"]
    assert {s.stage.name: s.outcome for s in steps if s.outcome == "up to date"} == {
        "corpus": "up to date", "qa": "up to date", "cpt": "up to date"}
    with Workspace(ctx.root) as ws:
        runs = ws.con.execute("SELECT stage, count(*) FROM stage_runs GROUP BY stage ORDER BY stage").fetchall()
    assert dict(runs) == {"corpus": 1, "qa": 1, "cpt": 1, "sft": 2, "merge": 2, "eval": 2, "report": 2, "cards": 2}

    # --until and --only: nothing after the named stage; only the named stage.
    _, steps = run_pipeline(load_run_recipe(recipe_file, ["eval.limit=5"]), until="merge", dry_run=True)
    assert actions(steps)["eval"] == "off" and steps[6].reason == "after --until merge"
    _, steps = run_pipeline(load_run_recipe(recipe_file, ["eval.limit=5"]), only="eval", dry_run=True)
    assert [s.stage.name for s in steps if s.action == "run"] == ["eval"]


def test_slurm_corpus_waits_for_its_jobs_then_adopts_their_output(tmp_path):

    from astrodata.corpus.build import build_corpus
    from astrodata.run.stages import corpus_options

    recipe = corpus_recipe(tmp_path, executor="slurm", shards=2).model_copy(update={"cards": load_run_recipe(
        "demo").cards})
    ctx, steps = run_pipeline(recipe, progress=False, log=lambda _: None)
    assert actions(steps)["corpus"] == "submitted" and actions(steps)["cards"] == "waiting"
    assert "runs on SLURM" in steps[8].reason
    assert sorted(p.name for p in (ctx.root / "slurm").glob("*.s*")) == [
        "corpus-merge.sbatch", "corpus-shards.sbatch", "submit.sh"]
    with Workspace(ctx.root) as ws:
        assert ws.last_stage_run("corpus")["status"] == "submitted"
    # What the jobs do on the cluster: each array task, then the merge job.
    opts = corpus_options(ctx)
    for k in (1, 2):
        build_corpus(ctx.root, opts.model_copy(update={"shard": (k, 2), "progress": False}))
    build_corpus(ctx.root, opts.model_copy(update={"progress": False}))
    _, steps = run_pipeline(recipe, progress=False, log=lambda _: None)
    assert actions(steps)["corpus"] == "resumed" and steps[1].figures == {
        "documents": 3, "tokens": steps[1].figures["tokens"], "executor": "slurm"}
    assert actions(steps)["cards"] == "ran" and (ctx.root / "corpus" / "README.md").is_file()
    _, steps = run_pipeline(recipe, progress=False, log=lambda _: None)
    assert actions(steps)["corpus"] == actions(steps)["cards"] == "up to date"
