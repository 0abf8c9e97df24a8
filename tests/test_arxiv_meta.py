"""arXiv metadata harvest: recorded real arXiv responses replayed from a real HTTP server on 127.0.0.1.

The server answers from the files in ../shared/data/arxiv-formats (pages 1 and 2 of a paged answer are
cut from one recorded response at test time, into tmp), so the real client code runs: the `arxiv`
package's paging, delay and retries; our OAI-PMH requests, resumption tokens and Retry-After waits.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import FIXTURES, shared
from typer.testing import CliRunner

from astrodata.core.http import retry_after_seconds
from astrodata.sources.arxiv_meta import (
    HarvestError,
    api_query,
    harvest,
    harvest_api,
    harvest_oai,
    harvest_snapshot,
    oai_sets,
    paper_metadata,
    split_authors,
    split_id,
)

ATOM = "{http://www.w3.org/2005/Atom}"
SAMPLE = FIXTURES / "arxiv_snapshot_sample.jsonl"
Response = tuple[int, dict[str, str], bytes]


class Replay:
    """A real HTTP server on 127.0.0.1 answering from `respond(path, params)`; it logs every request."""

    def __init__(self, respond: Callable[[str, dict[str, str]], Response]):
        self.requests: list[tuple[str, dict[str, str], float]] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query, keep_blank_values=True))
                replay.requests.append((parts.path, params, time.monotonic()))
                status, headers, body = respond(parts.path, params)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def replay():
    servers: list[Replay] = []

    def start(respond: Callable[[str, dict[str, str]], Response]) -> Replay:
        servers.append(Replay(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.server.shutdown()
        s.server.server_close()


def xml(body: bytes | str, status: int = 200) -> Response:
    return status, {"Content-Type": "application/atom+xml; charset=utf-8"}, body if isinstance(body, bytes) else body.encode()


UNEXPECTED: Response = (418, {}, b"unexpected request")


def api_file(name: str) -> Path:
    return shared("arxiv-formats", "arxiv_api_atom", name)


def oai_file(name: str) -> Path:
    return shared("arxiv-formats", "oai_pmh", name)


def papers(ws) -> dict[str, dict]:
    cols = [d[0] for d in ws.con.execute("SELECT * FROM papers LIMIT 0").description]
    return {r[0]: dict(zip(cols, r, strict=True)) for r in ws.con.execute("SELECT * FROM papers").fetchall()}


# -- ids and small helpers (run everywhere) ---------------------------------------------------------
def test_split_id_new_old_and_wrapped_forms():
    assert split_id("2401.01234v2") == ("2401.01234", 2)
    assert split_id("0704.0001") == ("0704.0001", None)
    assert split_id("astro-ph/0601001v1") == ("astro-ph/0601001", 1)
    assert split_id("http://arxiv.org/abs/astro-ph/0601001v3") == ("astro-ph/0601001", 3)
    assert split_id("oai:arXiv.org:hep-th/9504118") == ("hep-th/9504118", None)
    assert split_id("arXiv:1412.8544") == ("1412.8544", None)
    assert split_id("astro-ph0601001") == ("astro-ph/0601001", None)  # bulk-tar file stem
    assert split_id("math.GT/0309136") == ("math.GT/0309136", None)
    for bad in ("abc", "2401.123", "astro-ph/06010", "my-paper", ""):
        with pytest.raises(ValueError, match="not an arXiv id"):
            split_id(bad)


def test_author_lines_sets_queries_and_retry_after():
    assert split_authors("Igor A. Zaliznyak and John M. Tranquada") == ["Igor A. Zaliznyak", "John M. Tranquada"]
    assert split_authors("A. One (Inst X, City), B. Two, and C. Three") == ["A. One", "B. Two", "C. Three"]
    assert oai_sets(["astro-ph.CO", "astro-ph", "gr-qc", "cs.LG"]) == ["physics:astro-ph", "physics:gr-qc", "cs"]
    assert oai_sets([]) == [None]
    q = api_query(["astro-ph", "gr-qc"], None, None)
    assert "cat:astro-ph.CO" in q and "cat:astro-ph OR" in q and "cat:gr-qc" in q and "submittedDate" not in q
    from datetime import date

    assert api_query(["gr-qc"], date(2024, 1, 1), date(2024, 1, 31)) == \
        "(cat:gr-qc) AND submittedDate:[202401010000 TO 202401312359]"
    assert retry_after_seconds("10") == 10.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


# -- (a) the arXiv API ----------------------------------------------------------------------------------
def test_api_old_style_id_current_format(workspace, replay):
    body = api_file("arxivpy_2026_id_astro-ph_0601001.xml").read_bytes()
    server = replay(lambda path, p: xml(body) if p.get("id_list") == "astro-ph/0601001" else UNEXPECTED)
    stats = harvest_api(workspace, ids=["astro-ph/0601001"], base_url=server.url + "/api/query",
                        delay_seconds=0, num_retries=0)
    assert (stats.requests, stats.inserted, stats.errors) == (1, 1, 0)
    assert server.requests[0][0] == "/api/query"
    row = papers(workspace)["astro-ph/0601001"]
    assert row["title"].startswith("Frequency of Hot Jupiters and Very Hot Jupiters")
    assert row["authors"] == ["Andrew Gould", "Susan Dorsher", "B. Scott Gaudi", "Andrzej Udalski"]
    assert (row["primary_category"], row["categories"], row["latest_version"]) == ("astro-ph", ["astro-ph"], 1)
    assert row["journal_ref"] == "ActaAstron.56:1-50,2006" and row["harvested_from"] == "api"
    assert str(row["published"]) == "2006-01-02" and row["abstract"].startswith("We derive the frequencies")
    meta = paper_metadata(workspace, "astro-ph0601001v1")  # the e-print file stem form
    assert meta["url"] == "https://arxiv.org/abs/astro-ph/0601001v1" and meta["date"] == "2006-01-02"
    assert paper_metadata(workspace, "not-an-arxiv-paper") is None
    assert paper_metadata(workspace, "2401.99999") is None
    run = workspace.con.execute("SELECT command, status, counts FROM runs").fetchall()
    assert run[0][:2] == ("harvest", "done") and json.loads(run[0][2])["inserted"] == 1


def test_api_2016_format_versions_and_doi(workspace, replay):
    body = api_file("arxivpy_2016_id_list_1111.2011v2.xml").read_bytes()
    server = replay(lambda path, p: xml(body))
    harvest_api(workspace, ids=["1111.2011v2"], base_url=server.url, delay_seconds=0, num_retries=0)
    row = papers(workspace)["1111.2011"]
    assert row["title"] == "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large Connectivity Limit"
    assert row["doi"] == "10.1103/PhysRevB.85.115117" and row["journal_ref"] == "Phys. Rev. B 85, 115117 (2012)"
    assert row["latest_version"] == 2 and (str(row["published"]), str(row["updated"])) == ("2011-11-08", "2012-04-02")
    assert json.loads(row["versions"]) == [{"version": 1, "date": "2011-11-08T18:48:36Z"},
                                           {"version": 2, "date": "2012-04-02T12:38:54Z"}]
    assert row["categories"] == ["cond-mat.str-el", "cond-mat.stat-mech"] and row["primary_category"] == "cond-mat.str-el"
    assert "\n" not in row["abstract"] and row["abstract"].startswith("Theoretical description of anisotropic")


def _split_feed(body: str, per_page: int, tmp_path: Path) -> list[bytes]:
    """Cut one recorded search feed into pages, as the API would have served them."""
    entries = re.findall(r"  <entry>.*?</entry>\n", body, flags=re.S)
    head, tail = body.split(entries[0])[0], "</feed>\n"
    head = re.sub(r"<opensearch:totalResults>\d+<", f"<opensearch:totalResults>{len(entries)}<", head)
    pages = []
    for start in range(0, len(entries), per_page):
        page = re.sub(r"<opensearch:startIndex>\d+<", f"<opensearch:startIndex>{start}<", head)
        page += "".join(entries[start:start + per_page]) + tail
        (tmp_path / f"page{start}.xml").write_text(page)
        pages.append((tmp_path / f"page{start}.xml").read_bytes())
    return pages


def test_api_paging_delay_and_filters(workspace, replay, tmp_path):
    recorded = api_file("arxivpy_2026_search_testing_start0_max10.xml").read_text()
    pages = _split_feed(recorded, 5, tmp_path)
    server = replay(lambda path, p: xml(pages[int(p["start"]) // 5]) if p["max_results"] == "5" else UNEXPECTED)
    stats = harvest_api(workspace, ["cs.SE"], "2015-01-01", "2024-12-31", base_url=server.url, page_size=5,
                        delay_seconds=0.3, num_retries=0)
    # expected from an independent parse of the recorded feed
    want = set()
    for e in ET.fromstring(recorded).iter(ATOM + "entry"):
        cats = [c.get("term") for c in e.iter(ATOM + "category")]
        if "cs.SE" in cats and "2015-01-01" <= e.find(ATOM + "published").text[:10] <= "2024-12-31":
            want.add(split_id(e.find(ATOM + "id").text)[0])
    assert 0 < len(want) < 10
    assert set(papers(workspace)) == want and stats.filtered_out == 10 - len(want) and stats.seen == 10
    starts = [p["start"] for _, p, _ in server.requests]
    assert starts == ["0", "5"] and stats.requests == 2
    q = server.requests[0][1]
    assert q["search_query"] == "(cat:cs.SE) AND submittedDate:[201501010000 TO 202412312359]"
    assert (q["sortBy"], q["sortOrder"]) == ("submittedDate", "ascending")
    assert server.requests[1][2] - server.requests[0][2] >= 0.3  # the politeness delay


def test_api_http_400_is_a_clear_error(workspace, replay, tmp_path):
    recorded = json.loads(api_file("arxivpy_2026_id_abc_malformed.recorded.json").read_text())
    server = replay(lambda path, p: xml(recorded["body"], recorded["status_code"]))
    with pytest.raises(HarvestError, match=r"HTTP 400: incorrect id format for abc \(http://127"):
        harvest_api(workspace, ids=["abc"], base_url=server.url, delay_seconds=0, num_retries=3)
    assert len(server.requests) == 1  # a client error is final: no retries
    assert workspace.con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    (err,) = workspace.errors()
    assert err["reason"] == "request failed" and "incorrect id format for abc" in err["detail"]

    from astrodata.cli import app

    result = CliRunner().invoke(app, ["harvest", "--method", "api", "--id", "abc", "--base-url", server.url,
                                      "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "HTTP 400: incorrect id format for abc" in " ".join(result.output.split())


def test_api_retries_server_errors_and_empty_result(workspace, replay):
    good = api_file("arxivpy_2026_id_1605.08386.xml").read_bytes()
    empty = api_file("arxivpy_2026_id_0000.0000_empty.xml").read_bytes()
    calls = []

    def respond(path, p):
        calls.append(p["id_list"])
        if p["id_list"] == "0000.0000":
            return xml(empty)
        return (503, {}, b"busy") if calls.count("1605.08386") == 1 else xml(good)

    server = replay(respond)
    stats = harvest_api(workspace, ids=["0000.0000"], base_url=server.url, delay_seconds=0, num_retries=2)
    assert (stats.seen, stats.inserted, stats.errors) == (0, 0, 0)
    stats = harvest_api(workspace, ids=["1605.08386"], base_url=server.url, delay_seconds=0, num_retries=2)
    assert calls.count("1605.08386") == 2 and stats.inserted == 1
    assert papers(workspace)["1605.08386"]["authors"] == ["Caprice Stanley", "Tobias Windisch"]


# -- (b) OAI-PMH ---------------------------------------------------------------------------------------
def _paged_listrecords(recorded: str, tmp_path: Path, token: str) -> list[bytes]:
    """Cut a recorded ListRecords answer into two pages joined by a resumption token."""
    records = re.findall(r"<record>.*?</record>\n", recorded, flags=re.S)
    head, tail = recorded.split(records[0])[0], "</ListRecords>\n</OAI-PMH>\n"
    first = head + records[0] + f'<resumptionToken cursor="0" completeListSize="2">{token}</resumptionToken>\n' + tail
    second = head + records[1] + '<resumptionToken cursor="1" completeListSize="2"></resumptionToken>\n' + tail
    for n, page in enumerate((first, second)):
        (tmp_path / f"oai{n}.xml").write_text(page)
    return [(tmp_path / f"oai{n}.xml").read_bytes() for n in range(2)]


def test_oai_503_retry_after_and_resumption(workspace, replay, tmp_path):
    exchange = json.loads(oai_file("paperhive_listrecords_should-list-identifiers-from-arxiv.json").read_text())
    busy = exchange[0]
    assert busy["status"] == 503
    raw = dict(zip(busy["rawHeaders"][::2], busy["rawHeaders"][1::2], strict=True))
    busy_headers = {k: raw[k] for k in ("Retry-After", "Content-Type")}
    token = "6817239|1001"
    pages = _paged_listrecords(exchange[1]["response"], tmp_path, token)
    served = []

    def respond(path, p):
        served.append(p)
        if len(served) == 1:
            return busy["status"], busy_headers, busy["response"].encode()
        return xml(pages[1] if p.get("resumptionToken") == token else pages[0])

    server = replay(respond)
    stats = harvest_oai(workspace, [], "2015-01-01", "2015-01-03", metadata_prefix="arXiv",
                        base_url=server.url + "/oai2", delay_seconds=0, max_retry_wait=0.4)
    first = {"verb": "ListRecords", "metadataPrefix": "arXiv", "from": "2015-01-01", "until": "2015-01-03"}
    assert served == [first, first, {"verb": "ListRecords", "resumptionToken": token}]
    wait = server.requests[1][2] - server.requests[0][2]
    assert 0.4 <= wait < 5  # Retry-After: 10 honoured, bounded by max_retry_wait
    assert (stats.requests, stats.inserted, stats.errors) == (3, 2, 0)
    rows = papers(workspace)
    ks = rows["1412.8544"]
    assert ks["authors"] == ["Sander Uijlen", "Bas Westerbaan"] and ks["doi"] == "10.4204/EPTCS.172.11"
    assert ks["license"] == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"
    assert str(ks["published"]) == "2014-12-29" and ks["harvested_from"] == "oai-arXiv"
    assert ks["title"] == "A Kochen-Specker system has at least 22 vectors (extended abstract)"
    assert "\n" in ks["abstract"] and ks["abstract"].split("\n")[1].startswith("Continuing their effort")
    assert rows["hep-th/9504118"]["title"] == "Discrete Mathematics and Physics on the Planck-Scale"


def test_oai_set_per_archive_and_category_filter(workspace, replay):
    body = oai_file("invenio_arXiv_ListRecords_astro-ph_0801.3931.xml").read_bytes()
    other = oai_file("paperhive_listrecords_should-list-identifiers-from-arxiv.0.xml").read_bytes()
    server = replay(lambda path, p: xml(body if p.get("set") == "physics:astro-ph" else other))
    stats = harvest_oai(workspace, ["astro-ph.CO", "astro-ph"], "2013-03-25", base_url=server.url, delay_seconds=0)
    assert [p for _, p, _ in server.requests] == [
        {"verb": "ListRecords", "metadataPrefix": "arXivRaw", "set": "physics:astro-ph", "from": "2013-03-25"}]
    row = papers(workspace)["0801.3931"]
    assert row["authors"] == ["T. Manos", "E. Athanassoula"] and row["doi"] == "10.1007/978-3-540-75826-6_11"
    assert row["journal_ref"] == "Chaos in Astronomy Astrophysics and Space Science Proceedings 2009, pp 115-122"
    assert "$(y,p_y)$" in row["abstract"] and stats.inserted == 1
    stats = harvest_oai(workspace, ["gr-qc"], base_url=server.url, delay_seconds=0)  # cs.DM, hep-th: none kept
    assert (stats.seen, stats.filtered_out, stats.inserted) == (2, 2, 0)


def _as_listrecords(getrecord: str) -> str:
    """The recorded arXivRaw GetRecord answer reshaped as the ListRecords page that holds it."""
    out = getrecord.replace('verb="GetRecord" identifier="oai:arXiv.org:1304.4214"', 'verb="ListRecords"')
    return out.replace("<GetRecord>", "<ListRecords>").replace("</GetRecord>", "</ListRecords>")


V2 = ('<version version="v2"><date>Tue, 14 May 2013 09:00:00 GMT</date><size>612kb</size>'
      "<source_type>D</source_type></version>")


def test_oai_arxivraw_versions_and_merging(workspace, replay, tmp_path):
    v1 = _as_listrecords(oai_file("invenio_arXivRaw_GetRecord_1304.4214.xml").read_text())
    v2 = v1.replace("</version>", "</version>" + V2, 1)
    (tmp_path / "raw_v2.xml").write_text(v2)
    current = {"body": v1}
    server = replay(lambda path, p: xml(current["body"]))
    harvest_oai(workspace, ["cond-mat"], base_url=server.url, delay_seconds=0)
    row = papers(workspace)["1304.4214"]
    assert json.loads(row["versions"]) == [{"version": 1, "date": "2013-04-15T19:33:21Z", "size": "609kb"}]
    assert row["authors"] == ["Igor A. Zaliznyak", "John M. Tranquada"] and row["harvested_from"] == "oai-arXivRaw"
    assert row["comments"].startswith('31 pages, chapter for "Strongly Correlated Systems: Experimental Techniques"')
    assert row["license"] == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"

    current["body"] = (tmp_path / "raw_v2.xml").read_text()
    stats = harvest_oai(workspace, ["cond-mat"], base_url=server.url, delay_seconds=0)
    assert (stats.inserted, stats.updated) == (0, 1)
    current["body"] = v1  # an older view of the paper arrives later: more versions win
    stats = harvest_oai(workspace, ["cond-mat"], base_url=server.url, delay_seconds=0)
    assert (stats.updated, stats.unchanged) == (0, 1)
    assert workspace.con.execute("SELECT count(*) FROM papers").fetchall() == [(1,)]
    row = papers(workspace)["1304.4214"]
    assert row["latest_version"] == 2 and str(row["updated"]) == "2013-05-14"
    assert [v["version"] for v in json.loads(row["versions"])] == [1, 2]
    meta = paper_metadata(workspace, "1304.4214v1")
    assert (meta["version"], meta["date"], meta["latest_version"]) == (1, "2013-04-15", 2)


def test_oai_bad_record_is_recorded_and_protocol_errors_stop(workspace, replay):
    page = oai_file("paperhive_listrecords_should-list-identifiers-from-arxiv.0.xml").read_text()
    broken = page.replace("<id>1412.8544</id>", "<id>not an id</id>", 1)
    refused = re.sub(r"<ListRecords>.*</ListRecords>",
                     '<error code="badResumptionToken">The value of the resumptionToken argument is invalid or '
                     "expired.</error>", page, flags=re.S)
    empty = re.sub(r"<ListRecords>.*</ListRecords>",
                   '<error code="noRecordsMatch">No records match</error>', page, flags=re.S)
    bodies = {None: broken, "physics:gr-qc": empty, "physics:hep-th": refused}
    server = replay(lambda path, p: xml(bodies[p.get("set")]) if p.get("set") in bodies else (400, {}, b"bad"))
    stats = harvest_oai(workspace, [], base_url=server.url, delay_seconds=0)
    assert (stats.errors, stats.inserted) == (1, 1) and set(papers(workspace)) == {"hep-th/9504118"}
    (err,) = workspace.errors(stats.run_id)
    assert err["doc_id"] == "oai:arXiv.org:1412.8544" and "not an arXiv id" in err["detail"]
    stats = harvest_oai(workspace, ["gr-qc"], base_url=server.url, delay_seconds=0)
    assert (stats.requests, stats.seen, stats.errors) == (1, 0, 0)
    with pytest.raises(HarvestError, match="badResumptionToken"):
        harvest_oai(workspace, ["hep-th"], base_url=server.url, delay_seconds=0)
    with pytest.raises(HarvestError, match="HTTP 400"):
        harvest_oai(workspace, ["math"], base_url=server.url, delay_seconds=0)


def test_recorded_and_derived_oai_records_match_arxiv_xsd(tmp_path):
    etree = pytest.importorskip("lxml.etree")
    schemas = {ns: etree.XMLSchema(etree.parse(str(oai_file(f"arxiv-oaipmh_{name}.xsd"))))
               for ns, name in (("http://arxiv.org/OAI/arXiv/", "arXiv"), ("http://arxiv.org/OAI/arXivRaw/", "arXivRaw"))}
    raw = _as_listrecords(oai_file("invenio_arXivRaw_GetRecord_1304.4214.xml").read_text())
    docs = [oai_file(n).read_bytes() for n in ("invenio_arXiv_ListRecords_astro-ph_0801.3931.xml",
                                               "paperhive_listrecords_should-list-identifiers-from-arxiv.0.xml")]
    docs += [raw.encode(), raw.replace("</version>", "</version>" + V2, 1).encode()]
    checked = 0
    for doc in docs:
        for meta in etree.fromstring(doc).iter("{http://www.openarchives.org/OAI/2.0/}metadata"):
            record = meta[0]
            schema = schemas[etree.QName(record).namespace]
            assert schema.validate(record), schema.error_log
            checked += 1
    assert checked == 5


# -- (c) the metadata snapshot -----------------------------------------------------------------------------
def _expected(path: Path, cats: tuple[str, ...], lo: str, hi: str) -> set[str]:
    """Independent reading of the snapshot: matching category, first version dated within [lo, hi]."""
    from email.utils import parsedate_to_datetime

    keep = set()
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        first = parsedate_to_datetime(obj["versions"][0]["created"]).date().isoformat()
        if any(c.split(".")[0] in cats for c in obj["categories"].split()) and lo <= first <= hi:
            keep.add(obj["id"])
    return keep


def test_snapshot_plain_gz_zip_with_category_and_dates(workspace, tmp_path):
    path = shared("arxiv-formats", "kaggle_snapshot", "arxiv-metadata-oai-snapshot.first200.jsonl")
    want_all = _expected(path, ("astro-ph", "gr-qc"), "0000", "9999")
    assert len(want_all) == 30  # SOURCES.json: 30 of the 200 lines are astro-ph or gr-qc
    stats = harvest_snapshot(workspace, path, ["astro-ph", "gr-qc"])
    assert set(papers(workspace)) == want_all and (stats.seen, stats.inserted, stats.errors) == (200, 30, 0)

    want = _expected(path, ("astro-ph",), "2007-04-01", "2007-04-01")
    assert 0 < len(want) < 30
    gz, zipped = tmp_path / "s.json.gz", tmp_path / "arxiv.zip"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(path, "arxiv-metadata-oai-snapshot.json")
    for source in (path, gz, zipped):
        from astrodata.core.workspace import Workspace

        with Workspace(tmp_path / f"w-{source.name}") as ws:
            harvest_snapshot(ws, source, ["astro-ph"], "2007-04-01", "2007-04-01")
            assert set(papers(ws)) == want
    row = papers(workspace)["0704.0007"]
    assert row["authors"] == ["Alejandro Corichi", "Tatjana Vukasinac", "Jose A. Zapata"]
    assert row["latest_version"] == 2 and str(row["updated"]) == "2007-08-22" and row["primary_category"] == "gr-qc"
    assert row["title"] == "Polymer Quantum Mechanics and its Continuum Limit"


def test_snapshot_then_oai_of_the_same_papers_never_duplicates(workspace, tmp_path):
    """The astro-ph/gr-qc subset is a second harvest of lines already seen: rows update, never double."""
    first = shared("arxiv-formats", "kaggle_snapshot", "arxiv-metadata-oai-snapshot.first200.jsonl")
    subset = shared("arxiv-formats", "kaggle_snapshot", "arxiv-metadata-oai-snapshot.astro-ph_gr-qc_subset.jsonl")
    harvest_snapshot(workspace, first, ["astro-ph", "gr-qc"])
    stats = harvest_snapshot(workspace, subset, ["astro-ph", "gr-qc"])
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 0, 30)
    lines = subset.read_text().splitlines()
    obj = json.loads(lines[0])
    obj["versions"].append({"version": f"v{len(obj['versions']) + 1}", "created": "Mon, 1 Dec 2008 10:00:00 GMT"})
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps(obj) + "\n")
    stats = harvest_snapshot(workspace, newer, ["astro-ph", "gr-qc"])
    assert stats.updated == 1
    assert workspace.con.execute("SELECT count(*) FROM papers").fetchall() == [(30,)]
    assert papers(workspace)[obj["id"]]["latest_version"] == len(obj["versions"])


# -- self-written fixture: runs everywhere ---------------------------------------------------------------------
def test_snapshot_sample_filters_errors_and_metadata(workspace):
    stats = harvest_snapshot(workspace, SAMPLE, ["astro-ph", "gr-qc"], "2006-01-01", "2024-12-31")
    rows = papers(workspace)
    assert set(rows) == {"2401.00017", "gr-qc/0601002"}
    assert (stats.seen, stats.errors, stats.filtered_out) == (5, 2, 1)
    errors = {e["doc_id"]: e["detail"] for e in workspace.errors(stats.run_id)}
    assert set(errors) == {"arxiv_snapshot_sample.jsonl:4", "arxiv_snapshot_sample.jsonl:5"}
    assert "JSONDecodeError" in errors["arxiv_snapshot_sample.jsonl:4"] and "not an arXiv id" in errors[
        "arxiv_snapshot_sample.jsonl:5"]
    galaxy = rows["2401.00017"]
    assert galaxy["title"] == "A self-written fixture about galaxy rotation curves"
    assert galaxy["abstract"] == "We describe a fictional measurement of rotation curves.\nA second paragraph follows."
    assert galaxy["authors"] == ["Ada Writer", "Ben Tester", "C. D. Sample"]
    assert (galaxy["primary_category"], galaxy["latest_version"]) == ("astro-ph.GA", 2)
    meta = paper_metadata(workspace, "2401.00017v2")
    assert meta["license"] == "http://creativecommons.org/licenses/by/4.0/" and meta["date"] == "2024-03-15"
    assert meta["url"] == "https://arxiv.org/abs/2401.00017v2"
    assert paper_metadata(workspace, "gr-qc0601002")["journal_ref"] == "Fict. Rev. D 1, 1 (2006)"
    # a narrower date window and a subcategory
    stats = harvest_snapshot(workspace, SAMPLE, ["astro-ph.CO"], "2024-01-01", "2024-01-31")
    assert (stats.unchanged, stats.inserted) == (1, 0)


def test_cli_harvest_snapshot_and_bad_options(tmp_path):
    from astrodata.cli import app

    work = tmp_path / "w"
    runner = CliRunner()
    result = runner.invoke(app, ["harvest", "--method", "snapshot", "--snapshot", str(SAMPLE), "--category",
                                 "gr-qc", "--from", "2006-01-01", "--until", "2006-12-31", "--workdir", str(work)])
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output
    from astrodata.core.workspace import Workspace

    with Workspace(work) as ws:
        assert list(papers(ws)) == ["gr-qc/0601002"]
    for args, reason in ((["--method", "ftp"], "method must be one of"),
                         (["--method", "snapshot", "--snapshot", str(tmp_path / "none.json")], "snapshot not found"),
                         (["--method", "api", "--from", "Jan 1"], "date_from must be a date")):
        result = runner.invoke(app, ["harvest", *args, "--workdir", str(work)])
        assert result.exit_code == 1 and reason in result.output and "Traceback" not in result.output
    with pytest.raises(ValueError, match="snapshot path goes with"):
        harvest(None, "oai", snapshot="x.json")
    with pytest.raises(ValueError, match="needs categories or ids"):
        harvest_api(None, [])
