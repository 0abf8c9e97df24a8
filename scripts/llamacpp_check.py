"""Live checks against llama.cpp's OpenAI-compatible server (llama-cpp-python), serving the same
SmolLM2 GGUF the embedded model is converted from:

1. `astrodata eval` through the endpoint: base-token from completion prompt log-probabilities (echo),
   instruct-token from chat `top_logprobs`, predictions compared with the local backend's;
2. `build-qa` with the `json_object_schema` dialect (probed, not configured): every stored item
   schema-valid, failures counted.

Findings with llama-cpp-python 0.3.36 (2026-11): build-qa works once the schema carries no string
length bounds (its grammar compiler fails on `maxLength: 1200` and the server then dies); its
echoed prompt log-probabilities are shifted by one token and lack the generated one (refused, then
the first generated token's top-20 are used); that top list is empty when the most likely next
token is end-of-turn, which is SmolLM2's choice after "Answer:", so base-token falls back to
generation here, counted. SmolLM2 never opens a chat reply with `{"ANSWER": "` unconstrained, so
instruct-token falls back per question, counted.

llama-cpp-python builds from source (~10 min on 2 cores), so it lives in a side environment, never
in the project's dependencies or CI:

    python -m venv /work/llamacpp-venv
    /work/llamacpp-venv/bin/pip install "llama-cpp-python[server]==0.3.36"
    .venv/bin/python scripts/llamacpp_check.py [--server-python /work/llamacpp-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from astrodata.core.models import gguf_path  # noqa: E402
from benchmarks.astromlab1 import evaluate  # noqa: E402

KEYED = ROOT / "tests" / "fixtures" / "mcq" / "astro_keyed.jsonl"
ALIAS = "smollm2-q4_1"


def start_server(python: str, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", ALIAS,
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--logits_all", "true"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama.cpp server exited; see {log}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"llama.cpp server not ready after 120 s; see {log}")


def predictions(folder: Path) -> dict[str, dict]:
    return {p["id"]: p for p in map(json.loads, (folder / "predictions.jsonl").read_text().splitlines())}


def max_difference(a: dict[str, dict], b: dict[str, dict]) -> float | None:
    """Largest difference of a letter's log-probability between the two runs (finite values only)."""
    diffs = [abs(x - y) for k in a if a[k]["logprobs"] and b[k]["logprobs"]
             for x, y in zip(a[k]["logprobs"], b[k]["logprobs"], strict=True) if math.isfinite(x) and math.isfinite(y)]
    return max(diffs) if diffs else None


def check_eval(url: str, work: Path, limit: int) -> None:
    from astrodata.core.models import embedded_model_path

    for method in ("base-token", "instruct-token"):
        remote = evaluate(KEYED, ALIAS, method, work / f"{method}-endpoint", endpoint=url, limit=limit)
        local = evaluate(KEYED, str(embedded_model_path()), method, work / f"{method}-local", limit=limit)
        a, b = predictions(work / f"{method}-endpoint"), predictions(work / f"{method}-local")
        same = sum(a[k]["prediction"] == b[k]["prediction"] for k in a)
        print(f"eval {method}: endpoint accuracy {remote['accuracy']:.3f} with {remote['fallbacks']} fallbacks to "
              f"generation; local (dequantized safetensors) {local['accuracy']:.3f}; same prediction on "
              f"{same}/{len(a)} questions; largest letter log-probability difference {max_difference(a, b)}; "
              f"endpoint {remote['questions_per_s']:.2f} q/s")


def check_build_qa(url: str, work: Path, papers: int) -> None:
    from qa_support import real_corpus

    from astrodata.core.shards import read_rows
    from astrodata.qa.build import QA_SCHEMA, build_qa

    corpus = real_corpus(work, ["v1298tau-tess.tar.gz", "sirius-b.tar.gz", "mab-rings.tar.gz"][:papers])
    overrides = {"passages": {"max_per_doc": 2}, "engine": {"concurrency": 2}}
    t = time.monotonic()
    stats = build_qa(corpus, work / "qa", work / "qa-work", endpoint=url, model=ALIAS, overrides=overrides,
                     progress=False)
    rows = list(read_rows(work / "qa"))
    assert all(set(r) == set(QA_SCHEMA.names) and r["generator"] == ALIAS for r in rows if r["kind"] != "metadata")
    e = stats["engine"]
    print(f"build-qa: dialect {stats['dialect']} (probed); {stats['documents']} papers, {e['requests_sent']} "
          f"requests, {e['replies_ok']} valid replies, {e['replies_invalid']} invalid, {e['failed']} failed; "
          f"items {stats['output']}; {time.monotonic() - t:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-python", default="/work/llamacpp-venv/bin/python")
    parser.add_argument("--limit", type=int, default=30, help="questions for the eval checks")
    parser.add_argument("--papers", type=int, default=3, help="papers for the build-qa check (0: skip it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, url = start_server(args.server_python, work / "server.log")
        try:
            check_eval(url, work, args.limit)
            if args.papers:
                check_build_qa(url, work, args.papers)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
