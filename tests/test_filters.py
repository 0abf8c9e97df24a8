"""Quality filters: each measure on hand-computed cases, drop records, and real documents."""

from __future__ import annotations

import json

import pytest
from conftest import shared

from astrodata.corpus import filters as F
from astrodata.corpus.recipe import load_recipe

S = load_recipe().filters
PROSE = ("Spectroscopic observations of the nearby galaxy reveal a rotating disc of ionised gas, "
         "whose velocity field we model with a thin tilted ring. ")
# A clean English paragraph with no repeated phrases (written for these tests).
CLEAN = """Young stellar clusters form inside giant molecular clouds, where turbulence and gravity
compete over millions of years. Once massive stars ignite, their ultraviolet radiation and winds
carve cavities into the surrounding gas and can halt further star formation nearby. Observers
trace this feedback with hydrogen recombination lines, infrared dust emission and the kinematics
of the expanding shells. Numerical simulations suggest that the efficiency of converting gas into
stars depends on the cloud's surface density, although measured values still scatter widely.
Surveys with new interferometers now resolve individual cores at distances of several kiloparsecs,
which lets us compare mass functions across environments. Whether the initial mass function is
universal remains debated; some starburst regions appear to favour heavier stars, while quiet
dwarf galaxies seem to produce fewer of them than expected."""

FRENCH = """Les jeunes amas d'étoiles naissent au coeur des nuages moléculaires géants, où la turbulence
et la gravité s'affrontent pendant des millions d'années. Dès que les étoiles massives s'allument,
leur rayonnement ultraviolet et leurs vents creusent des cavités dans le gaz environnant et peuvent
interrompre la formation stellaire voisine. Les observateurs suivent cette rétroaction grâce aux
raies de recombinaison de l'hydrogène, à l'émission infrarouge des poussières et à la cinématique
des coquilles en expansion. Les simulations numériques suggèrent que l'efficacité de conversion
du gaz en étoiles dépend de la densité surfacique du nuage, bien que les valeurs mesurées restent
très dispersées."""


def doc(text: str) -> F.Doc:
    return F.Doc(text)


def test_length_and_language():
    assert F.length(doc("one two three"), S) == (False, 3)
    assert F.length(doc(CLEAN), S) == (True, len(CLEAN.split()))
    keep, p_en = F.language(doc(CLEAN), S)
    assert keep and p_en > 0.9
    keep, p_en = F.language(doc(FRENCH), S)
    assert not keep and p_en < 0.1


def test_symbol_non_alpha_and_digit_ratios():
    tags = "#astro #space #nasa #stars great night " * 10
    assert F.symbol_word_ratio(doc(tags), S) == (False, pytest.approx(40 / 60))
    headed = "## Results\n\n" + PROSE + "\n\n### Discussion\n\nWhat next... we ask."
    keep, value = F.symbol_word_ratio(doc(headed), S)
    assert keep and value == pytest.approx(1 / len(headed.split()))  # the headings' '#' don't count
    table = "flux 12.1 13.4 15.0 -- 0.3 | 0.2 | 7 8 9 10 11 " * 10
    keep, value = F.non_alpha_words(doc(table), S)
    assert not keep and value == pytest.approx(13 / 14)
    ids = "ID20230101123 ID20230101456 observed " * 20
    keep, value = F.digit_ratio(doc(ids), S)
    assert not keep and value == pytest.approx(22 / (13 + 13 + 8))


def test_math_is_set_aside():
    paper = "".join(f"Region {chr(65 + i)} shows a hole of $M_{{\\rm BH}} = 4.1 \\times 10^{{6}} M_\\odot$ at $z = 0.0{i}3$.\n"
                    "$$\\begin{aligned}\nv(r) &= 1 2 3 4\\\\\n= 5 6 7 8\n\\end{aligned}$$\n" for i in range(20))
    for fn in (F.non_alpha_words, F.digit_ratio, F.dup_line_fraction):
        assert fn(doc(paper), S)[0], fn.__name__
    unmarked = paper.replace("$", "")
    assert not F.dup_line_fraction(doc(unmarked), S)[0]
    assert "4.1" not in doc(paper).prose and "Region T shows a hole of" in doc(paper).prose
    prices = "It cost $5 and the ticket $10 on Monday."
    assert "Monday" in doc(prices).prose  # a formula never spans a line break or 300 characters


def test_line_and_paragraph_repetition():
    lines = "alpha beta\ngamma\nalpha beta\nalpha beta\n"
    assert F.dup_line_fraction(doc(lines), S) == (False, 0.5)
    assert F.dup_line_char_fraction(doc(lines), S) == (False, pytest.approx(20 / 35))
    paras = "First paragraph here.\n\nSecond one.\n\nFirst paragraph here.\n\n\nThird."
    assert F.dup_paragraph_fraction(doc(paras), S) == (True, 0.25)
    assert F.dup_paragraph_char_fraction(doc(paras), S)[1] == pytest.approx(21 / (21 + 11 + 21 + 6))


def test_ngram_repetition():
    keep, value = F.top_ngram_char_fraction(doc("a b a b a b c"), S, n=2)
    assert not keep and value == pytest.approx(3 * 2 / 7)
    assert F.top_ngram_char_fraction(doc("a b c d e f"), S, n=2) == (True, 0.0)
    keep, value = F.dup_ngram_char_fraction(doc("A b, c d e. a B c d e"), S, n=5)
    assert not keep and value == pytest.approx(0.5)  # the second occurrence covers 5 of 10 chars
    assert F.dup_ngram_char_fraction(doc("a b c d e f g h i j"), S, n=5) == (True, 0.0)
    # overlapping repeats are counted once: "x y z" x 4 has repeats from word 3 on
    assert F.dup_ngram_char_fraction(doc("x y z " * 4), S, n=5)[1] == pytest.approx(9 / 12)


def test_boilerplate_and_short_lines():
    page = (PROSE + "\nWe use cookies to improve your experience.\nAll Rights Reserved 2024.\n"
            "Please enable JavaScript.\n")
    keep, value = F.boilerplate_line_fraction(doc(page), S)
    assert not keep and value == pytest.approx(3 / 4)
    assert F.boilerplate_line_fraction(doc(PROSE + "\nThe cookiecutter template."), S)[1] == 0.0
    menu = "Home\nAbout us\nContact\nNews\n" + PROSE
    keep, value = F.short_line_fraction(doc(menu), S)
    assert not keep and value == pytest.approx(4 / 5)


def test_apply_filters_reports_first_failure_and_keeps_order():
    docs = [
        {"id": "a", "text": CLEAN},
        {"id": "b", "text": "too short"},
        {"id": "c", "text": FRENCH},
        {"id": "d", "text": CLEAN + "\n" + "\n".join(["Same line again and again."] * 30)},
        {"id": "e", "text": CLEAN.replace("Young", "Old")},
    ]
    drops: list[tuple[str, F.Drop]] = []
    kept = list(F.apply_filters(docs, S, on_drop=lambda d, drop: drops.append((d["id"], drop))))
    assert [d["id"] for d in kept] == ["a", "e"]
    by_id = {i: d for i, d in drops}
    assert by_id["b"].filter == "length" and by_id["b"].value == 2 and by_id["b"].rule == "words >= 50 and <= 250000"
    assert by_id["c"].filter == "language" and by_id["c"].value < 0.5
    assert by_id["d"].filter == "dup_line_fraction" and by_id["d"].value == pytest.approx(29 / 40)
    assert json.loads(json.dumps(by_id["d"].details()))["filter"] == "dup_line_fraction"


def test_threshold_null_switches_a_filter_off():
    settings = load_recipe(overrides={"filters": {"min_words": None, "max_words": None}}).filters
    names = [name for name, _, _ in F.active_filters(settings)]
    assert "length" not in names and "language" in names
    assert list(F.apply_filters([{"id": "x", "text": "Short English sentence about stars."}], settings))


def test_real_papers_pass_default_filters():
    """The 30 real astro-ph papers (math-heavy LaTeX) are all kept by the default thresholds."""
    to_text = pytest.importorskip("astrodata.latex.to_text", reason="needs the LaTeX stage")
    from astrodata.latex.flatten import flatten
    from astrodata.sources.eprints import unpack_eprint

    folder = shared("arxiv-eprints")
    failures = {}
    for paper in json.loads((folder / "MANIFEST.json").read_text()):
        path = next(folder.glob(f"{paper['slug']}.*gz"))
        text = to_text.latex_to_text(flatten(unpack_eprint(path, paper["slug"])).text).text
        failure = F.first_failure(text, F.active_filters(S))
        if failure:
            failures[paper["slug"]] = failure
    assert failures == {}


def test_real_wikipedia_articles():
    from astrodata.sources.wikipedia import iter_xml_pages, wikitext_to_text

    dump = shared("wikipedia-dumps", "gensim__enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    titles = {"Albedo", "Astronomer", "Amateur astronomy", "Astronaut", "Alkane", "Asia", "Algae",
              "List of anthropologists", "Aa River"}
    docs = [{"id": p.title, "text": wikitext_to_text(p.text, ["References", "External links"])}
            for p in iter_xml_pages(dump) if p.title in titles]
    drops: dict[str, F.Drop] = {}
    kept = {d["id"] for d in F.apply_filters(docs, S, on_drop=lambda d, drop: drops.setdefault(d["id"], drop))}
    assert kept == titles - {"List of anthropologists", "Aa River"}
    assert drops["List of anthropologists"].filter == "non_alpha_words"  # names and (1876–1960) years
    assert drops["Aa River"].filter == "dup_5gram_char_fraction"  # "a river in ..., Netherlands" x 19


def test_strip_math_equals_the_math_rule_in_linear_time():
    """`strip_math` is `MATH.sub(" ", text)` without the regex's rescans: the same result on fuzzed
    mixes of every delimiter, and a finished call on the inputs that made the regex backtrack for
    minutes (40k lines of `$$a$$b`, of `\\[a\\]b`, of unclosed `\\begin{equation}`)."""
    import random

    rng = random.Random(5)
    pieces = ["$", "$$", "\\[", "\\]", "\n", " ", "\t", "a", "x y", "\\begin{equation}", "\\end{equation}",
              "\\begin{align*}", "\\end{align*}", "\\end{align}", "\\begin{gather}", "\\end{gather}"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        assert F.strip_math(text) == F.MATH.sub(" ", text), repr(text)
    for line in ("$$a$$b\n", "\\[a\\]b\n", "\\begin{equation} x\n"):
        small = line * 300
        assert F.strip_math(small) == F.MATH.sub(" ", small)
        big = F.strip_math(line * 40_000)  # the regex needs minutes here
        assert big.count("\n") >= 39_999
    doc = F.Doc("1" * 200_000 + " word " * 100)  # a letterless run of 200k characters
    from types import SimpleNamespace

    assert F.non_alpha_words(doc, SimpleNamespace(max_non_alpha_words=0.2)) == (True, pytest.approx(1 / 101))
