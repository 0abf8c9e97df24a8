"""Publishing through the real huggingface_hub / datasets / transformers clients to a Hub stand-in on 127.0.0.1.

The clients read HF_ENDPOINT when they are imported, so every client step runs in a subprocess with the
environment pointing at `tests/hub_server.py` (HF_HUB_DISABLE_XET=1: Xet cannot be served here). The server
counts every request and every LFS upload, which is what "nothing sent" and "not re-uploaded" are checked on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from cards.publish import PublishError, card_metadata, publish, validate_metadata
from cards.render import hub_license, license_metadata, write_corpus_card, write_qa_card
from tests.conftest import FIXTURES, ROOT
from tests.hub_server import TOKEN, LocalHub


# -- data made here -------------------------------------------------------------------------------------
def make_corpus(out: Path, workspace) -> Path:
    """A corpus folder: arXiv rows whose licence/url/date come from harvested snapshot metadata (the fixture
    snapshot), a Wikipedia row and a local document, with stats and its card."""
    from astrodata.core.shards import CORPUS_SCHEMA, ShardWriter
    from astrodata.corpus.stats import corpus_stats, write_report
    from astrodata.sources.arxiv_meta import harvest, paper_metadata, row_license_url_date

    harvest(workspace, "snapshot", snapshot=FIXTURES / "arxiv_snapshot_sample.jsonl", categories=["astro-ph"])
    ids = [r[0] for r in workspace.con.execute("SELECT arxiv_id FROM papers ORDER BY 1").fetchall()]
    rows = [{"id": f"arxiv:{i}", "source": "arxiv", "source_id": i, "title": f"Paper {i}",
             "text": f"Galaxy rotation curves in paper {i}. " * 20, "n_tokens": 120,
             **row_license_url_date(i, paper_metadata(workspace, i))} for i in ids]
    rows.append({"id": "arxiv:9912.99999", "source": "arxiv", "source_id": "9912.99999", "title": "unharvested",
                 "text": "Not in the catalog. " * 30, "n_tokens": 90, **row_license_url_date("9912.99999", None)})
    rows.append({"id": "wikipedia:1", "source": "wikipedia", "source_id": "1", "title": "Albedo",
                 "text": "Albedo is the fraction of light reflected. " * 20, "n_tokens": 150,
                 "license": "CC-BY-SA-4.0", "url": "https://en.wikipedia.org/wiki/Albedo", "date": "2016-01-01"})
    with ShardWriter(out, CORPUS_SCHEMA, prefix="train") as writer:
        for row in rows:
            writer.add(row)
    drops = [{"filter": "min_words"}, {"filter": "min_words"}, {"filter": "dedup"}]
    recipe = {"tokenizer": {"name": "/home/someone/models/smollm2"}, "decontam": {"benchmarks": []},
              "dedup": {"check": "exact", "threshold": 0.8}, "wikipedia": {"selection": "either"}}
    stats = corpus_stats(rows, drops, {2: 1}, extra={"recipe": recipe, "errors_per_reason": {"timeout": 1},
                                                    "dedup": {"docs": 6, "kept": 5, "dropped": {"near": 1}}})
    write_report(out, stats)
    write_corpus_card(out)
    return out


def make_qa(out: Path) -> Path:
    from astrodata.core.shards import ShardWriter

    rows = [{"id": f"qa-{i}", "kind": "qa", "messages": [{"role": "user", "content": f"What is {i}?"},
                                                         {"role": "assistant", "content": f"It is {i}."}],
             "source_id": "2401.00017v2", "passage_id": f"p{i}", "generator": "embedded", "prompt_version": "v1",
             "grade": 4, "judge": "embedded"} for i in range(5)]
    with ShardWriter(out, prefix="train") as writer:
        for row in rows:
            writer.add(row)
    write_qa_card(out)
    return out


def make_merged_model(root: Path) -> Path:
    """Two tiny Llama models (SmolLM2's tokenizer) merged 75/25 by training.merge, evaluated on the keyed MCQ
    fixture by benchmarks.astromlab1, and the card re-rendered with those results."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from astrodata.core.models import embedded_model_path
    from benchmarks.astromlab1 import evaluate
    from benchmarks.general import fold_lm_eval
    from cards.render import write_model_card
    from training.config import MergeConfig
    from training.merge import merge

    tok = AutoTokenizer.from_pretrained(embedded_model_path())
    for name, seed in (("sft", 0), ("instruct", 1)):
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
        LlamaForCausalLM(cfg).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    (root / "instruct" / "README.md").write_text(
        "---\nlicense: apache-2.0\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n")
    out = root / "merged"
    merge(MergeConfig(models=[{"path": root / "sft", "weight": 0.75}, {"path": root / "instruct", "weight": 0.25}],
                      out=out, base_from=root / "instruct", dtype="float32"))
    evaluate(FIXTURES / "mcq" / "astro_keyed.jsonl", str(out), "base-token", out / "eval")
    # a real lm-evaluation-harness results file (tests/fixtures/lm_eval), folded as `eval-general` folds it
    general = fold_lm_eval(json.loads((FIXTURES / "lm_eval" / "results_astromlab1.json").read_text()))
    (out / "eval" / "general_results.json").write_text(json.dumps(general))
    write_model_card(out)
    return out


# -- the hub and the clients -----------------------------------------------------------------------------
@pytest.fixture
def hub(tmp_path):
    server = LocalHub()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": server.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    server.env = env
    yield server
    server.close()


# The client's retry back-off sleeps 1+2+4+8+8 s before giving up on a dropped upload; the CLI runs here with
# that sleep removed so the fault test does not wait 23 s (the retries themselves still happen).
NO_BACKOFF = "import time; time.sleep = lambda seconds: None"


def cli(env: dict[str, str], *args: str, no_backoff: bool = False) -> subprocess.CompletedProcess:
    code = (NO_BACKOFF + "; " if no_backoff else "") + "from astrodata.cli import app; app()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def client(env: dict[str, str], code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def commits(hub: LocalHub) -> int:
    return sum(p.endswith("/commit/main") for m, p in hub.state.requests if m == "POST")


def error_line(r: subprocess.CompletedProcess) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-2000:]
    return lines[0]


# -- cards and metadata (no server) ------------------------------------------------------------------------
def test_licences_map_to_hub_metadata():
    assert hub_license("http://creativecommons.org/licenses/by/4.0/") == "cc-by-4.0"
    assert hub_license("http://creativecommons.org/licenses/by-nc-sa/4.0/") == "cc-by-nc-sa-4.0"
    assert hub_license("http://creativecommons.org/publicdomain/zero/1.0/") == "cc0-1.0"
    assert hub_license("CC-BY-SA-4.0") == "cc-by-sa-4.0"
    assert hub_license("http://arxiv.org/licenses/nonexclusive-distrib/1.0/") is None
    assert license_metadata(["CC-BY-SA-4.0"]) == {"license": "cc-by-sa-4.0"}
    assert license_metadata(["http://arxiv.org/licenses/nonexclusive-distrib/1.0/"]) == {
        "license": "other", "license_name": "arxiv-nonexclusive-distrib-1.0",
        "license_link": "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"}
    mixed = license_metadata(["CC-BY-SA-4.0", "http://creativecommons.org/licenses/by/4.0/"])
    assert mixed["license"] == "other" and mixed["license_name"] == "mixed-per-document"
    for meta in (license_metadata(["CC-BY-SA-4.0"]), mixed):
        validate_metadata(meta, "dataset")


@pytest.mark.parametrize(("meta", "repo_type", "message"), [
    ({"tags": ["x"]}, "dataset", "no `license`"),
    ({"license": "CC BY 4.0"}, "dataset", "not a Hub licence id"),
    ({"license": "other"}, "dataset", "needs `license_name`"),
    ({"license": "other", "license_name": "x"}, "model", "needs `license_link`"),
    ({"license": "mit", "tags": "astronomy"}, "model", "`tags` must be a list"),
    ({"license": "mit", "model-index": [{"name": "m", "results": [{"task": {"type": "t"}, "metrics": []}]}]},
     "model", "model-index result needs"),
    ({"license": "mit", "model-index": [{"name": "m", "results": [{"task": {"type": "t"}, "dataset": {
        "name": "d", "type": "d"}, "metrics": [{"type": "accuracy", "value": "high"}]}]}]}, "model", "numeric value"),
])
def test_invalid_metadata_is_named(meta, repo_type, message):
    with pytest.raises(PublishError, match=message):
        validate_metadata(meta, repo_type)


def test_yaml_syntax_error_is_one_line():
    with pytest.raises(PublishError, match=r"not valid YAML at line \d+") as err:
        card_metadata("---\nlicense: mit\ntags: [astronomy\n---\n# card\n")
    assert "\n" not in str(err.value)
    with pytest.raises(PublishError, match="no YAML metadata block"):
        card_metadata("# card without metadata\n")


def test_corpus_card_states_what_the_build_did(tmp_path, workspace):
    out = make_corpus(tmp_path / "corpus", workspace)
    text = (out / "README.md").read_text()
    meta = card_metadata(text)
    validate_metadata(meta, "dataset")
    rows = pq.read_table(out / "data").to_pylist()
    licences = {r["source_id"]: r["license"] for r in rows}
    # the fixture snapshot: 2401.00017 names CC BY 4.0; a paper whose record names none gets arXiv's default
    assert licences["2401.00017"] == "http://creativecommons.org/licenses/by/4.0/"
    assert licences["9912.99999"] == "unknown"
    assert all(r["url"].startswith("https://arxiv.org/abs/") and r["date"] for r in rows if r["source"] == "arxiv")
    assert next(r for r in rows if r["source_id"] == "9912.99999")["date"] == "1999-12"
    assert meta["license"] == "other" and meta["license_name"] == "mixed-per-document"
    assert "**Mixed licences**" in text
    for lic, n in Counter(licences.values()).items():
        assert f"| `{lic}`" in text and f"| {n:,} |" in text
    assert "decontamination" not in text.lower().replace("no decontamination ran", "")
    assert "No decontamination ran" in text
    assert "min_words: 2" in text and "near 1" in text and "timeout 1" in text
    assert "/home/someone" not in text and "/home/someone" not in (out / "stats.json").read_text()
    assert str(tmp_path) not in text and str(tmp_path) not in (out / "stats.json").read_text()
    assert "`smollm2` tokenizer" in text


# -- through the real clients (subprocesses against the local hub) -------------------------------------------
@pytest.mark.slow
def test_publish_datasets_round_trip(tmp_path, workspace, hub):
    corpus = make_corpus(tmp_path / "corpus", workspace)
    qa = make_qa(tmp_path / "qa")
    work = tmp_path / "publish-work"
    for folder, repo in ((corpus, "tester/astro-corpus"), (qa, "tester/astro-qa")):
        r = cli(hub.env, "publish", str(folder), "--repo-id", repo, "--workdir", str(work))
        assert r.returncode == 0, r.stderr[-3000:]
        assert TOKEN not in r.stdout + r.stderr
        got = client(hub.env, f"import datasets, json; ds = datasets.load_dataset({repo!r}, split='train'); "
                              "print(json.dumps(ds.to_list()))")
        expected = pq.read_table(folder / "data").to_pylist()
        assert sorted(json.loads(got), key=lambda x: x["id"]) == sorted(expected, key=lambda x: x["id"])
    # unchanged folder: no new commit, and the catalog says so
    before = commits(hub)
    r = cli(hub.env, "publish", str(corpus), "--repo-id", "tester/astro-corpus", "--workdir", str(work))
    assert r.returncode == 0 and "no new commit" in r.stderr, r.stderr[-2000:]
    assert commits(hub) == before
    import duckdb

    with duckdb.connect(str(work / "catalog.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT repo_id, repo_type, kind, new_commit, files, bytes, commit_id FROM publishes "
                           "ORDER BY published_at").fetchall()
        dump = json.dumps(con.execute("SELECT * FROM publishes").fetchall(), default=str)
    assert [(r[0], r[2], r[3]) for r in rows] == [("tester/astro-corpus", "corpus", True),
                                                   ("tester/astro-qa", "qa", True),
                                                   ("tester/astro-corpus", "corpus", False)]
    assert rows[0][6] == rows[2][6] and rows[0][5] > 0 and rows[0][4] >= 3
    assert TOKEN not in dump


@pytest.mark.slow
def test_publish_merged_model(tmp_path, hub):
    model = make_merged_model(tmp_path)
    r = cli(hub.env, "publish", str(model), "--repo-id", "tester/astro-merged", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = client(hub.env, "import json; from huggingface_hub import ModelCard; from transformers import AutoConfig; "
                          "card = ModelCard.load('tester/astro-merged'); "
                          "cfg = AutoConfig.from_pretrained('tester/astro-merged'); "
                          "print(json.dumps({'index': card.data.to_dict()['model-index'], "
                          "'layers': cfg.num_hidden_layers, 'base': card.data.base_model, 'text': card.text}))")
    got = json.loads(out)
    results = json.loads((model / "eval" / "results.json").read_text())
    metric = got["index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "accuracy" and metric["value"] == round(100 * results["accuracy"], 2)
    assert got["layers"] == 2 and got["base"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for section in ("Model Details", "Performance", "Training Data", "Intended Use", "Limitations",
                    "Ethical Considerations", "Technical Specifications", "Citation"):
        assert f"## {section}" in got["text"]
    assert "| `sft` (local folder) | 0.75 |" in got["text"] and results["prompt_hash"][:12] in got["text"]
    general = json.loads((model / "eval" / "general_results.json").read_text())["scores"]
    (task, score), = general.items()
    second = got["index"][0]["results"][1]
    assert second["dataset"]["name"] == task and second["metrics"][0]["value"] == round(score["value"], 2)
    assert f"| {task} | {score['metric']} | {score['value']:.1f} |" in got["text"]
    assert str(tmp_path) not in got["text"]
    assert any(m == "GET" and p.endswith("/config.json") for m, p in hub.state.requests)


@pytest.mark.slow
def test_fault_mid_upload_then_resume(tmp_path, hub):
    import hashlib

    folder = make_qa(tmp_path / "qa")
    extra = folder / "extra"
    extra.mkdir()
    for i in range(3):  # more LFS files, so some arrive while one is cut off
        (extra / f"blob-{i}.bin").write_bytes(os.urandom(200_000 + i))
    oids = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in [*extra.glob("*"), *folder.glob("data/*")]}
    cut = oids["blob-1.bin"]
    hub.state.drop_puts.add(cut)
    r = cli(hub.env, "publish", str(folder), "--repo-id", "tester/faulty", "--workdir", str(tmp_path / "w"),
            no_backoff=True)
    assert r.returncode == 1 and commits(hub) == 0, r.stderr[-3000:]
    first = dict(hub.state.puts)
    arrived = {o for o in oids.values() if o in hub.state.lfs}
    assert cut not in arrived and len(arrived) == len(oids) - 1 and first[cut] >= 2  # retried, then gave up
    hub.state.drop_puts.clear()
    r = cli(hub.env, "publish", str(folder), "--repo-id", "tester/faulty", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert commits(hub) == 1
    assert all(hub.state.puts[o] == first[o] for o in arrived)  # nothing that arrived was sent again
    assert hub.state.puts[cut] == first[cut] + 1


@pytest.mark.slow
def test_bad_input_is_one_line_and_sends_nothing(tmp_path, hub):
    corpus_like = make_qa(tmp_path / "qa")
    no_token = {k: v for k, v in hub.env.items() if k != "HF_TOKEN"}
    line = error_line(cli(no_token, "publish", str(corpus_like), "--repo-id", "tester/x"))
    assert "no Hugging Face token" in line
    line = error_line(cli(hub.env, "publish", str(corpus_like), "--repo-id", "tester/x", "--repo-type", "model"))
    assert "is a dataset (qa), not a model" in line
    (tmp_path / "empty").mkdir()
    line = error_line(cli(hub.env, "publish", str(tmp_path / "empty"), "--repo-id", "tester/x"))
    assert "neither a dataset" in line
    card = corpus_like / "README.md"
    text = card.read_text()
    card.write_text(text.replace("license_name: mixed-per-source-and-generator\n", "", 1))
    line = error_line(cli(hub.env, "publish", str(corpus_like), "--repo-id", "tester/x"))
    assert "license `other` needs `license_name`" in line
    card.write_text(text.replace("license: other", "license: [other", 1))
    line = error_line(cli(hub.env, "publish", str(corpus_like), "--repo-id", "tester/x"))
    assert "not valid YAML" in line
    meta = yaml.safe_load(card.read_text().split("---")[1].replace("[other", "other"))
    assert meta["license"] == "other"
    for r in (line,):
        assert TOKEN not in r
    assert hub.state.requests == []
    # dry run: lists files and metadata, sends nothing, needs no token
    qa = make_qa(tmp_path / "qa2")
    r = cli(no_token, "publish", str(qa), "--repo-id", "tester/x", "--dry-run")
    assert r.returncode == 0 and "README.md" in r.stdout and "license:" in r.stdout, r.stderr[-2000:]
    assert hub.state.requests == []
    with pytest.raises(PublishError, match="OWNER/NAME"):
        publish(qa, "not-a-repo-id", dry_run=True)


def test_training_leftovers_are_not_uploaded(tmp_path):
    from cards.publish import detect_kind, list_files

    model = tmp_path / "cpt"
    for rel in ("config.json", "model.safetensors", "README.md", "trainer_state.json", "training_args.bin",
                "checkpoint-10/optimizer.pt", "checkpoint-10/model.safetensors", "dataset-cache/cpt-1/data.arrow",
                ".cache/huggingface/upload/x.lock", "eval/results.json"):
        (model / rel).parent.mkdir(parents=True, exist_ok=True)
        (model / rel).write_text("x")
    assert detect_kind(model) == ("model", "model")
    assert [f for f, _ in list_files(model)] == ["README.md", "config.json", "eval/results.json",
                                                 "model.safetensors", "trainer_state.json"]


def test_local_paths_in_uploaded_files_are_cut_and_the_folder_is_untouched(tmp_path, workspace, hub):
    """review-1: `astrodata eval` writes the model folder and question file as given (absolute) into
    results.json, and a model folder carries it under eval/; those paths must not reach the Hub."""
    corpus = make_corpus(tmp_path / "corpus", workspace)
    results = {"model": str(tmp_path / "runs" / "merged"), "data": str(FIXTURES / "mcq" / "astro_keyed.jsonl"),
               "answer_key": None, "unit": "km/s/Mpc", "url": "https://arxiv.org/abs/2407.11194", "accuracy": 0.5}
    (corpus / "eval").mkdir()
    (corpus / "eval" / "results.json").write_text(json.dumps(results, indent=2))
    (corpus / "eval" / "report.md").write_text(f"Run on `{tmp_path}/runs/merged` with {FIXTURES}/mcq/x.jsonl.\n")
    before = {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    r = cli(hub.env, "publish", str(corpus), "--repo-id", "tester/paths", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(client(hub.env, "import json; from huggingface_hub import hf_hub_download as d; print(json.dumps("
                                     "[open(d('tester/paths', f, repo_type='dataset')).read() for f in "
                                     "('eval/results.json', 'eval/report.md', 'stats.json')]))"))
    uploaded = json.loads(got[0])
    assert uploaded == results | {"model": "merged", "data": "astro_keyed.jsonl"}
    assert got[1] == "Run on `merged` with x.jsonl.\n"
    for text in got:
        assert str(tmp_path) not in text and str(ROOT) not in text
    assert {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file() and ".cache" not in p.parts} == before
    # the cleaned copies are what the Hub holds: publishing again makes no commit
    n = commits(hub)
    r = cli(hub.env, "publish", str(corpus), "--repo-id", "tester/paths", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 0 and "no new commit" in r.stderr and commits(hub) == n, r.stderr[-2000:]


@pytest.mark.parametrize("repo_id, message", [
    ("me/..", "must use alphanumeric"), ("me/-x", "cannot start or end"), ("me/a..b", "Cannot have -- or .."),
    ("me/x.git", "cannot end by '.git'"), ("me/" + "x" * 97, "maximum length is 96"), ("ïd/ñame", "alphanumeric"),
])
def test_repo_ids_the_hub_refuses_fail_the_dry_run(tmp_path, repo_id, message):
    """review-1: these passed the dry run ("would upload ...") and failed only when publishing for real."""
    qa = make_qa(tmp_path / "qa")
    with pytest.raises(PublishError, match=re.escape(message)) as err:
        publish(qa, repo_id, dry_run=True)
    assert "\n" not in str(err.value)
