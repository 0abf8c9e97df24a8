"""Wikipedia source: XML dump and Parquet reading, astronomy selection, wikitext -> text."""

from __future__ import annotations

import bz2
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, shared

from astrodata.corpus.recipe import load_recipe
from astrodata.sources.wikipedia import (
    iter_wikipedia_documents,
    iter_xml_pages,
    page_categories,
    wikipedia_license,
    wikitext_to_text,
)

MINI = FIXTURES / "wikipedia" / "mini-pages-articles.xml"
DUMP_2016 = "gensim__enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TABLES = "gensim__enwiki-table-markup.xml.bz2"


def settings(**overrides):
    return load_recipe(overrides={"wikipedia": overrides}).wikipedia


def run(source, wiki_settings, **kwargs):
    decisions = []
    docs = list(iter_wikipedia_documents(source, wiki_settings, decisions.append, **kwargs))
    return docs, {d.title: d for d in decisions}


@pytest.fixture
def mini_bz2(tmp_path):
    path = tmp_path / "mini-pages-articles.xml.bz2"
    with open(MINI, "rb") as src, bz2.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def test_mini_dump_selection_reasons_and_rows(mini_bz2):
    docs, decisions = run(mini_bz2, settings())
    assert [d["title"] for d in docs] == ["Delta Cephei", "Hubble constant"]
    assert decisions["Delta Cephei"].action == "kept"
    assert "'Cepheid variables' is 3 hop(s) below 'Astronomical objects'" in decisions["Delta Cephei"].reason
    assert decisions["Hubble constant"].reason.startswith("lexicon")
    assert decisions["Offside (association football)"].action == "dropped"
    assert decisions["Delta Cep"].action == "redirect" and "'Delta Cephei'" in decisions["Delta Cep"].reason
    assert decisions["Talk:Delta Cephei"].action == "skipped"
    assert decisions["Mercury"].reason == "disambiguation page"
    assert "Category:Stars" in decisions  # category pages are reported as skipped namespaces
    delta = docs[0]
    assert delta["id"] == "wikipedia:10" and delta["source"] == "wikipedia" and delta["source_id"] == "10"
    assert delta["url"] == "https://en.wikipedia.org/wiki/Delta_Cephei"  # from <siteinfo><base>
    french = mini_bz2.with_name("fr.xml")
    french.write_text(MINI.read_text().replace("en.wikipedia.org", "fr.wikipedia.org"))
    assert run(french, settings())[0][0]["url"] == "https://fr.wikipedia.org/wiki/Delta_Cephei"
    assert delta["date"] == "2022-03-01" and delta["license"] == "CC-BY-SA-3.0"
    assert docs[1]["license"] == "CC-BY-SA-4.0"


def test_select_ids_splits_pages_between_shards(mini_bz2):
    wiki = settings()
    seen: list[str] = []
    for k in (0, 1):
        docs, decisions = run(mini_bz2, wiki, select_ids=lambda doc_id, k=k: int(doc_id.split(":")[1]) % 2 == k)
        seen += [d["title"] for d in docs]
        assert "Delta Cep" in decisions if k == 1 else "Delta Cep" not in decisions  # page 13 is odd
    assert sorted(seen) == ["Delta Cephei", "Hubble constant"]


def test_category_depth_and_mode(mini_bz2):
    shallow = settings(selection="category", category_depth=2, category_patterns=[])
    docs, decisions = run(mini_bz2, shallow)
    assert docs == []  # Delta Cephei is 3 hops down; Hubble constant has no category at all
    assert decisions["Delta Cephei"].action == "dropped"
    docs, _ = run(mini_bz2, settings(selection="category", category_depth=3, category_patterns=[]))
    assert [d["title"] for d in docs] == ["Delta Cephei"]
    docs, decisions = run(mini_bz2, settings(selection="lexicon"))
    assert {d["title"] for d in docs} == {"Delta Cephei", "Hubble constant"}
    assert decisions["Delta Cephei"].reason.startswith("lexicon")


def test_categorylinks_file_adds_hierarchy(tmp_path):
    plain = tmp_path / "mini.xml"  # uncompressed dumps are read too
    plain.write_text(MINI.read_text().replace("[[Category:Cepheid variables]]", "[[Category:Pulsating]]"))
    links = tmp_path / "categorylinks.tsv"
    links.write_text("page\tcategory\nCategory:Pulsating\tCepheid variables\nDelta Cephei\tPulsating\n")
    strict = settings(selection="category", category_depth=4, category_patterns=[])
    assert run(plain, strict)[0] == []
    docs, decisions = run(plain, strict, categorylinks=links)
    assert [d["title"] for d in docs] == ["Delta Cephei"]
    assert "'Pulsating' is 4 hop(s)" in decisions["Delta Cephei"].reason
    bad = tmp_path / "bad.csv"
    bad.write_text("from,to\nx,y\n")
    with pytest.raises(ValueError, match="page,category"):
        run(plain, strict, categorylinks=bad)


def test_wikitext_to_text_drops_markup_keeps_prose():
    page = next(p for p in iter_xml_pages(MINI) if p.title == "Delta Cephei")
    text = wikitext_to_text(page.text, ["References"])
    assert text.startswith("Delta Cephei is a yellow-white supergiant in the northern constellation of Cepheus")
    assert "about 887 ly away." in text  # {{convert}} keeps its quantity
    assert "## History" in text and "## Properties" in text and "References" not in text
    assert "$M_V = -2.43 \\log P - 1.62$" in text
    assert "- Mass: about 4.5 solar masses" in text
    for residue in ("{{", "}}", "[[", "]]", "{|", "|-", "||", "<ref", "Parallax", "thumb", "Infobox",
                    "de:Delta", "5.366 d", "Category"):
        assert residue not in text, residue
    assert page_categories(page.text) == ["Cepheid variables"]


def test_parquet_dataset_lexicon_selection(tmp_path):
    hubble = next(p for p in iter_xml_pages(MINI) if p.title == "Hubble constant")
    rows = [
        {"id": "12", "url": "https://en.wikipedia.org/wiki/Hubble_constant", "title": "Hubble constant",
         "text": wikitext_to_text(hubble.text)},
        {"id": "11", "url": "https://en.wikipedia.org/wiki/Offside", "title": "Offside",
         "text": "Offside is one of the laws of association football, judged by the referee. " * 5},
    ]
    folder = tmp_path / "20231101.en"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "train-00000-of-00001.parquet")
    docs, decisions = run(folder, settings())
    assert [d["title"] for d in docs] == ["Hubble constant"]
    assert docs[0]["text"] == rows[0]["text"] and docs[0]["url"] == rows[0]["url"]
    assert docs[0]["license"] == "CC-BY-SA-4.0" and docs[0]["date"] == ""
    assert decisions["Offside"].action == "dropped" and decisions["Offside"].score == 0.0
    pq.write_table(pa.Table.from_pylist([{"id": "1", "body": "x"}]), folder / "train-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="row 0 lacks column"):
        run(folder, settings())


def test_license_switch_date():
    assert wikipedia_license("2016-03-01") == "CC-BY-SA-3.0"
    assert wikipedia_license("2023-06-29") == "CC-BY-SA-4.0"
    assert wikipedia_license(None) == "CC-BY-SA-4.0"


def test_real_2016_dump_keeps_astronomy_drops_the_rest():
    docs, decisions = run(shared("wikipedia-dumps", DUMP_2016), settings())
    kept = {d["title"] for d in docs}
    assert {"Albedo", "Astronomer", "Amateur astronomy", "Apollo 11", "Apollo 8", "Astronaut"} <= kept
    for title in ("Anarchism", "Autism", "Alabama", "Aristotle", "Abraham Lincoln", "Academy Awards",
                  "Apollo", "Alkane", "Alkali metal", "Agriculture", "Atlantic Ocean", "Ada"):
        assert title not in kept, title
        assert decisions[title].reason
    articles = [d for d in decisions.values() if d.action in {"kept", "dropped"}]
    assert len(kept) <= 0.1 * len(articles)  # most pages of this fragment are not astronomy
    assert decisions["Astronomy/History"].reason == "redirect to 'History of astronomy'"
    assert all(d.reason for d in decisions.values())
    albedo = next(d for d in docs if d["title"] == "Albedo")
    assert albedo["license"] == "CC-BY-SA-3.0" and albedo["url"] == "https://en.wikipedia.org/wiki/Albedo"
    assert "## Terrestrial albedo" in albedo["text"] and "{{" not in albedo["text"]


def test_real_table_heavy_pages_leave_no_table_markup():
    pages = list(iter_xml_pages(shared("wikipedia-dumps", TABLES)))
    assert len(pages) == 5
    for page in pages:
        text = wikitext_to_text(page.text, load_recipe().wikipedia.drop_sections)
        assert len(text.split()) > 50, page.title
        for residue in ("{|", "|-", "||", "|}", "{{", "[["):
            assert residue not in text, (page.title, residue)
