"""Decontamination: planted benchmark questions are found (drop and redact), clean documents untouched."""

from __future__ import annotations

import csv
import json

import pytest

from astrodata.core.mcq import MCQError
from astrodata.corpus.decontam import BenchmarkIndex, Decontaminator, load_benchmark

ASTRO = [
    {"question": "Which process is thought to dominate the heating of the intracluster medium in "
                 "cool-core galaxy clusters over cosmic time?",
     "A": "Thermal conduction", "B": "Feedback from active galactic nuclei", "C": "Supernova winds",
     "D": "Cosmic-ray streaming alone"},
    {"question": "What observational signature most directly indicates that a protoplanetary disc "
                 "is being photoevaporated by its host star?",
     "A": "Blueshifted forbidden emission lines", "B": "A flat spectral energy distribution",
     "C": "Strong silicate absorption", "D": "A lack of millimetre continuum"},
]
MMLU = [
    ["In the standard cosmological model the present-day expansion of the Universe is accelerating "
     "mainly because of which component?", "Baryons", "Dark energy", "Neutrinos", "Radiation", "B"],
    ["Which quantity is conserved for a test particle on a geodesic in the Schwarzschild metric?",
     "Proper acceleration", "Specific angular momentum", "Coordinate speed", "Tidal force", "B"],
]
FREE = [
    {"prompt": "Explain why the Eddington luminosity limits the accretion rate onto a compact object."},
    {"question": "Why are gravitational waves from binary neutron stars louder than from white dwarfs?"},
    {"text": "What is a quasar?"},  # four words: too short to look for
]

PROSE = (
    "Observations of nearby galaxies constrain the star formation history of the local volume. "
    "We combine ultraviolet and infrared photometry with spectroscopic redshifts to estimate the "
    "dust-corrected star formation rate of each object in the sample, and compare the resulting "
    "distribution with predictions from hydrodynamical simulations of galaxy formation."
)


@pytest.fixture
def bench_files(tmp_path):
    astro = tmp_path / "astromlab1.csv"
    with astro.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["question", "A", "B", "C", "D"])
        w.writeheader()
        w.writerows(ASTRO)
    mmlu = tmp_path / "mmlu_astronomy_test.csv"  # headerless, the MMLU release layout
    with mmlu.open("w", newline="") as fh:
        csv.writer(fh).writerows(MMLU)
    free = tmp_path / "questions.jsonl"
    free.write_text("\n".join(json.dumps(r) for r in FREE) + "\n")
    return [astro, mmlu, free]


def planted_docs() -> list[dict]:
    """Each benchmark question planted once, in several disguises, between real-looking prose."""
    q0, q1 = ASTRO[0]["question"], ASTRO[1]["question"]
    block = f"{q1}\nA) {ASTRO[1]['A']}\nB) {ASTRO[1]['B']}\nC) {ASTRO[1]['C']}\nD) {ASTRO[1]['D']}"
    return [
        {"id": "p0", "text": f"{PROSE} {q0} {PROSE}"},
        {"id": "p1", "text": f"{PROSE}\n\n{block.upper()}\n\n{PROSE}"},  # case and layout changed
        {"id": "p2", "text": PROSE + " " + MMLU[0][0].replace(" ", "  ").replace("?", " ...")},
        {"id": "p3", "text": f"Quiz: {MMLU[1][0]} Answer: {MMLU[1][2]}."},
        {"id": "p4", "text": f"{PROSE} {FREE[0]['prompt']}"},
        {"id": "p5", "text": f"{FREE[1]['question']} {PROSE}"},  # 13 words: matched as a whole
    ]


def clean_docs() -> list[dict]:
    return [
        {"id": "c0", "text": PROSE},
        # shares long stretches of vocabulary with the questions but no 13-gram
        {"id": "c1", "text": "Heating of the intracluster medium in cool-core clusters is debated; "
                             "feedback from active galactic nuclei and thermal conduction both matter."},
        {"id": "c2", "text": "What is a quasar? A very luminous active galactic nucleus.", "source": "wikipedia"},
    ]


def test_planted_questions_dropped_clean_untouched(bench_files):
    dc = Decontaminator.from_files(bench_files, mode="drop")
    kept = list(dc.run(planted_docs() + clean_docs()))
    assert kept == clean_docs()  # equal content, same order, nothing added
    assert dc.stats.dropped == 6 and dc.stats.clean == 3 and dc.stats.docs == 9
    assert dc.stats.per_benchmark == {"astromlab1": 2, "mmlu_astronomy_test": 2, "questions": 2}


def test_redact_removes_only_the_question(bench_files):
    dc = Decontaminator.from_files(bench_files, mode="redact", redact_with=" [removed] ")
    docs = planted_docs()
    out = {d["id"]: d for d in dc.run(docs + clean_docs())}
    assert set(out) == {d["id"] for d in docs + clean_docs()}
    assert out["p0"]["text"] == f"{PROSE}  [removed] ? {PROSE}"  # words go, trailing punctuation stays
    assert "PHOTOEVAPORATED" not in out["p1"]["text"] and out["p1"]["text"].count(PROSE) == 2
    assert out["p3"]["text"].startswith("Quiz:  [removed] ")
    assert dc.stats.redacted == 6 and dc.stats.dropped == 0
    for doc in planted_docs():  # nothing of any question survives
        assert not dc.matches(out[doc["id"]]["text"])
    assert dc.stats.tokens_redacted > 6 * 13


def test_index_details(bench_files):
    free = load_benchmark(bench_files[2])
    assert free.items == 3 and free.skipped == 1  # "What is a quasar?" is too short to look for
    assert sorted(free.grams) == [13]
    short = BenchmarkIndex.from_texts("short", ["Name the nearest large spiral galaxy to the Milky Way"])
    assert list(short.grams) == [10]  # ten words: matched as a whole sequence
    dc = Decontaminator([short])
    assert dc.matches("Quiz: name the nearest large spiral galaxy to the milky way. It is M31.") == {"short": 10}
    assert dc.matches("Name the nearest large spiral galaxy to the Sun.") == {}
    mmlu = load_benchmark(bench_files[1])
    assert mmlu.items == 2 and mmlu.skipped == 0


def test_bad_benchmark_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "fine question"}) + "\n" + json.dumps({"id": 3}) + "\n")
    with pytest.raises(MCQError, match=r"bad.jsonl: row 2: no non-empty question/prompt/text field"):
        load_benchmark(bad)
    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text(json.dumps({"question": "q?", "A": "1", "B": "2", "C": "3"}) + "\n")
    with pytest.raises(MCQError, match="row 1: option D is missing"):
        load_benchmark(mcq)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"prompt": "fine"}) + "\n{not json\n")
    with pytest.raises(MCQError, match=r"broken.jsonl: row 2: invalid JSON"):
        load_benchmark(broken)
    listed = tmp_path / "listed.json"  # a JSON list of free questions works like JSONL
    listed.write_text(json.dumps([{"text": "How do astronomers measure the Hubble constant from the light "
                                           "curves of distant Type Ia supernovae?"}]))  # 16 words: 4 13-grams
    assert load_benchmark(listed).grams[13].size == 4
    with pytest.raises(ValueError, match="mode must be one of"):
        Decontaminator([], mode="mask")


def test_batches_never_join_documents(bench_files):
    dc = Decontaminator.from_files(bench_files)
    words_ = ASTRO[0]["question"].split()
    halves = [{"id": "h1", "text": PROSE + " " + " ".join(words_[:9])},
              {"id": "h2", "text": " ".join(words_[9:]) + " " + PROSE}]
    assert list(dc.run(halves)) == halves  # a question split across two documents is no match
    docs = planted_docs() + clean_docs()
    one_by_one = [dc.apply(d) for d in docs]
    assert list(dc.run(docs, batch_size=4)) == [d for d in one_by_one if d is not None]
