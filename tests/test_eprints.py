"""E-prints: safe in-memory unpacking (real papers, crafted hostile archives), the local-folder and
bulk-tar sources, and the polite downloader against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import shared
from hostile import DOC, gz, member, session_hostile_eprints, tar, tgz

from astrodata.sources.eprints import (
    EprintError,
    UnpackLimits,
    download_eprints,
    id_from_filename,
    iter_bulk_tar,
    iter_local_eprints,
    unpack_eprint,
)

TEXT_TYPES = (".tex", ".bib", ".bbl", ".sty", ".cls")


def manifest() -> list[dict]:
    return json.loads(shared("arxiv-eprints", "MANIFEST.json").read_text())


def raw_members(path: Path) -> dict[str, bytes]:
    """The oracle: members as tarfile itself reads them from disk."""
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    return session_hostile_eprints(tmp_path_factory)


# --- real papers --------------------------------------------------------------------------------


def test_real_tarballs_unpack_to_their_text_members():
    folder = shared("arxiv-eprints")
    for paper in manifest():
        path = folder / f"{paper['slug']}.tar.gz"
        eprint = unpack_eprint(path)
        raw = raw_members(path)
        assert eprint.eprint_id == paper["slug"] and eprint.kind == "tar"
        assert set(eprint.files) == {n for n in raw if n.endswith(TEXT_TYPES)}, paper["slug"]
        assert sum(n.endswith(".tex") for n in eprint.files) == paper["n_tex_files"], paper["slug"]
        assert any(n.endswith(".bib") for n in eprint.files) == paper["has_bib"]
        assert any(n.endswith(".bbl") for n in eprint.files) == paper["has_bbl"]
        assert paper["main_tex"] in eprint.files
        for name, text in eprint.files.items():
            data = raw[name]
            try:
                expected, encoding = data.decode("utf-8-sig"), "utf-8"
            except UnicodeDecodeError:
                expected, encoding = data.decode("latin-1"), "latin-1"
            assert eprint.encodings[name] == encoding
            assert text == expected.replace("\r\n", "\n").replace("\r", "\n")
            assert "\r" not in text


def test_crlf_paper_is_normalised():
    path = shared("arxiv-eprints", "turbope.tar.gz")
    assert b"\r\n" in raw_members(path)["ms.tex"]
    text = unpack_eprint(path).files["ms.tex"]
    assert "\r" not in text and text.count("\n") >= raw_members(path)["ms.tex"].count(b"\r\n")


def test_lone_gzipped_tex_is_the_same_text_as_in_the_tarball():
    folder = shared("arxiv-eprints")
    lone = sorted(folder.glob("*.gz"))
    lone = [p for p in lone if not p.name.endswith(".tar.gz")]
    assert len(lone) == 4
    mains = {p["slug"]: p["main_tex"] for p in manifest()}
    for path in lone:
        eprint = unpack_eprint(path)
        slug = path.name[:-3]
        assert eprint.kind == "gzip-tex" and eprint.eprint_id == slug
        (name, text), = eprint.files.items()
        assert name == Path(mains[slug]).name  # from the gzip header's original file name
        assert text == unpack_eprint(folder / f"{slug}.tar.gz").files[mains[slug]]


def test_bytes_and_path_give_the_same_eprint():
    path = shared("arxiv-eprints", "cosmic-cousins.tar.gz")
    from_path = unpack_eprint(path)
    from_bytes = unpack_eprint(path.read_bytes(), "2501.00001")
    assert from_bytes.eprint_id == "2501.00001"
    assert from_bytes.files == from_path.files and from_bytes.encodings == from_path.encodings


# --- hostile input ------------------------------------------------------------------------------


def test_hostile_set_is_large_and_covers_the_issue(hostile):
    _, expected = hostile
    assert len(expected) >= 50
    stages = {v.split(":")[0] for v in expected.values()}
    assert stages == {"unpack", "flatten", "ok", "latex"}
    reasons = {v.split(":")[1] for v in expected.values()}
    for needed in ("path-traversal", "symlink", "hardlink", "device", "too-large", "too-many-members", "gzip-bomb",
                   "not-latex", "empty", "corrupt-archive", "pdf-only", "latin-1", "macro-recursion", "unbalanced",
                   "huge-line", "input-cycle", "missing-input", "no-main-file"):
        assert needed in reasons, needed


def test_hostile_eprints_fail_with_their_reason_or_unpack(hostile, tmp_path, monkeypatch):
    folder, expected = hostile
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    wrong = []
    for name, outcome in sorted(expected.items()):
        stage, reason = outcome.split(":")
        try:
            eprint = unpack_eprint(folder / name)
        except EprintError as exc:
            if (stage, reason) != ("unpack", exc.reason):
                wrong.append(f"{name}: expected {outcome}, got unpack:{exc.reason} ({exc})")
            continue
        if stage == "unpack":
            wrong.append(f"{name}: expected {outcome}, unpacked to {sorted(eprint.files)}")
        elif reason == "latin-1" and eprint.encoding != "latin-1":
            wrong.append(f"{name}: encoding {eprint.encodings}")
    assert wrong == []
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing extracted beside the inputs
    assert list(tmp_path.iterdir()) == []  # nor in the working directory


def test_a_hostile_member_rejects_the_whole_eprint_and_names_it():
    data = tgz(member("ms.tex", DOC), member("figs/../../../evil.tex", DOC))
    with pytest.raises(EprintError) as err:
        unpack_eprint(data, "2401.99999")
    assert err.value.reason == "path-traversal"
    assert "2401.99999" in str(err.value) and "evil.tex" in str(err.value)


def test_binary_and_oversize_members_are_skipped_and_recorded():
    data = tgz(member("ms.tex", DOC), member("fig.pdf", b"%PDF-1.4 ..."), member("junk.tex", b"\x00\x01\x02"),
               member("table.tex", "x" * 5000))
    eprint = unpack_eprint(data, limits=UnpackLimits(max_file_bytes=4096))
    assert set(eprint.files) == {"ms.tex"}
    assert eprint.skipped == ["fig.pdf (not a text type)", "junk.tex (binary)", "table.tex (over 4096 bytes)"]


@pytest.mark.parametrize(
    ("limits", "data", "reason"),
    [
        (UnpackLimits(max_members=3), tgz(*[member(f"{i}.tex", DOC) for i in range(4)]), "too-many-members"),
        (UnpackLimits(max_total_bytes=50_000), tar(*[member(f"{i}.tex", DOC * 60) for i in range(5)]), "too-large"),
        (UnpackLimits(max_total_bytes=50_000), gz(DOC * 600), "too-large"),
        (UnpackLimits(ratio_floor_bytes=10_000, max_gzip_ratio=20), gz(b" " * 200_000), "gzip-bomb"),
        (UnpackLimits(max_file_bytes=1000), gz(DOC * 100), "too-large"),
    ],
)
def test_caps_are_enforced(limits, data, reason):
    with pytest.raises(EprintError) as err:
        unpack_eprint(data, limits=limits)
    assert err.value.reason == reason


def test_ratio_cap_spares_normal_text():
    """Real LaTeX compresses ~4x: far under the ratio, even with a low floor."""
    path = shared("arxiv-eprints", "jianbing-topn.tar.gz")
    eprint = unpack_eprint(path, limits=UnpackLimits(ratio_floor_bytes=100_000, max_gzip_ratio=20))
    assert "main.tex" in eprint.files


def test_plain_tar_and_plain_tex_are_sniffed_not_named():
    assert unpack_eprint(tar(member("a/ms.tex", DOC))).kind == "tar"
    assert unpack_eprint(DOC.encode()).kind == "tex"
    assert unpack_eprint(gz(DOC)).kind == "gzip-tex"
    assert unpack_eprint(gz(tar(member("ms.tex", DOC)))).kind == "tar"


def test_encodings_are_recorded_per_file():
    eprint = unpack_eprint(tgz(member("ms.tex", DOC), member("a.tex", "Gen\u00e8ve".encode("latin-1")),
                               member("b.tex", "Gen\u00e8ve")))
    assert eprint.encodings == {"ms.tex": "utf-8", "a.tex": "latin-1", "b.tex": "utf-8"}
    assert eprint.files["a.tex"] == eprint.files["b.tex"] == "Gen\u00e8ve"
    assert eprint.encoding == "latin-1"


# --- sources ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "eprint_id"),
    [
        ("2401.01234v2.tar.gz", "2401.01234v2"),
        ("2401.01234.gz", "2401.01234"),
        ("astro-ph0601001.gz", "astro-ph/0601001"),
        ("astro-ph0601001v3.pdf", "astro-ph/0601001v3"),
        ("math.GT0309136.tar", "math.GT/0309136"),
        ("my-paper.tex", "my-paper"),
        ("2401.01234v2", "2401.01234v2"),
    ],
)
def test_ids_from_file_names(name, eprint_id):
    assert id_from_filename(name) == eprint_id


def test_local_folder_yields_one_eprint_per_id(caplog):
    folder = shared("arxiv-eprints")
    found = list(iter_local_eprints(folder))
    assert [i for i, _ in found] == sorted(p["slug"] for p in manifest())
    paths = dict(found)
    assert paths["lightkurve"].name == "lightkurve.tar.gz"  # the archive wins over the lone .gz
    assert "ignoring lightkurve.gz" in caplog.text


def test_bulk_source_tar_members_unpack_like_the_files(tmp_path):
    folder = shared("arxiv-eprints")
    sources = {"2311/2311.00001.gz": folder / "legwork-paper.tar.gz", "2311/2311.00002v2.gz": folder / "pyspi-grb.gz",
               "2311/astro-ph0601001.gz": folder / "sirius-b.tar.gz"}
    bulk = tmp_path / "arXiv_src_2311_001.tar"
    with tarfile.open(bulk, "w") as tf:
        folder_entry = tarfile.TarInfo("2311")
        folder_entry.type = tarfile.DIRTYPE
        tf.addfile(folder_entry)
        for name, path in sources.items():
            tf.add(path, arcname=name)
        pdf = b"%PDF-1.4\n%%EOF\n"
        info = tarfile.TarInfo("2311/2311.00003.pdf")
        info.size = len(pdf)
        tf.addfile(info, io.BytesIO(pdf))
    got = dict(iter_bulk_tar(bulk))
    assert sorted(got) == ["2311.00001", "2311.00002v2", "2311.00003", "astro-ph/0601001"]
    for name, path in sources.items():
        eprint_id = id_from_filename(Path(name).name)
        assert unpack_eprint(got[eprint_id], eprint_id).files == unpack_eprint(path).files
    with pytest.raises(EprintError) as err:
        unpack_eprint(got["2311.00003"], "2311.00003")
    assert err.value.reason == "pdf-only"

    partial = tmp_path / "arXiv_src_2311_002.tar"
    partial.write_bytes(bulk.read_bytes()[: bulk.stat().st_size // 2])
    seen = []
    with pytest.raises(EprintError) as err:
        seen.extend(eprint_id for eprint_id, _ in iter_bulk_tar(partial))
    assert err.value.reason == "corrupt-archive" and str(partial) in str(err.value)
    assert seen and len(seen) < 4


# --- the downloader against a real local HTTP server ----------------------------------------------


class EprintServer:
    """Serves e-prints at /e-print/<id> like arXiv: gzip or PDF bodies; scripted failures first."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = dict(files)
        self.failures: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.log: list[tuple[float, str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                eprint_id = self.path.removeprefix("/e-print/")
                server.log.append((time.monotonic(), eprint_id, self.headers.get("User-Agent", "")))
                if server.failures.get(eprint_id):
                    status, headers = server.failures[eprint_id].pop(0)
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = server.files.get(eprint_id)
                if path is None:
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-eprint-tar")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/e-print/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EprintServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


UA = "astrodata-test/0.1 (+mailto:tests@example.org)"


@pytest.fixture
def served() -> dict[str, Path]:
    folder = shared("arxiv-eprints")
    return {"2111.08717": folder / "legwork-paper.tar.gz", "2306.00001v2": folder / "lightkurve.gz",
            "astro-ph/0601001": folder / "pyspi-grb.tar.gz"}


def test_download_is_polite_identified_and_resumable(tmp_path, served):
    dest = tmp_path / "eprints"
    with EprintServer(served) as server:
        results = download_eprints(list(served), dest, base_url=server.url, delay_s=0.3, user_agent=UA)
        assert [r.status for r in results] == ["downloaded"] * 3
        assert {entry[2] for entry in server.log} == {UA}
        starts = [entry[0] for entry in server.log]
        assert all(b - a >= 0.29 for a, b in zip(starts, starts[1:], strict=False)), starts
        for result in results:
            assert result.path.read_bytes() == served[result.eprint_id].read_bytes()
        assert sorted(p.name for p in dest.iterdir()) == ["2111.08717.gz", "2306.00001v2.gz", "astro-ph0601001.gz"]
        assert dict(iter_local_eprints(dest)).keys() == served.keys()
        assert unpack_eprint(dest / "astro-ph0601001.gz").files == unpack_eprint(served["astro-ph/0601001"]).files

        (dest / "2401.00002.part").write_bytes(b"half a file from a killed run")
        server.files["2401.00002"] = served["2111.08717"]
        n_before = len(server.log)
        again = download_eprints([*served, "2401.00002", "2401.00002"], dest, base_url=server.url, delay_s=0.0, user_agent=UA)
        assert [r.status for r in again] == ["exists"] * 3 + ["downloaded", "exists"]
        assert [entry[1] for entry in server.log[n_before:]] == ["2401.00002"]  # only the missing one fetched
        assert not list(dest.glob("*.part"))
        assert (dest / "2401.00002.gz").read_bytes() == served["2111.08717"].read_bytes()


def test_download_honours_retry_after_and_backs_off(tmp_path, served):
    with EprintServer(served) as server:
        server.failures["2111.08717"] = [(503, {"Retry-After": "1"})]
        server.failures["2306.00001v2"] = [(429, {}), (502, {})]
        results = download_eprints(["2111.08717", "2306.00001v2", "2404.00404"], tmp_path, base_url=server.url,
                                   delay_s=0.1, user_agent=UA)
    assert [r.status for r in results] == ["downloaded", "downloaded", "failed"]
    assert results[2].detail == "HTTP 404"
    times = {}
    for when, eprint_id, _ in server.log:
        times.setdefault(eprint_id, []).append(when)
    first, second = times["2111.08717"]
    assert second - first >= 0.99  # Retry-After: 1
    t = times["2306.00001v2"]
    assert len(t) == 3 and t[1] - t[0] >= 0.099 and t[2] - t[1] >= 0.199  # delay, then 2 x delay
    assert len(times["2404.00404"]) == 1  # a 404 is not retried


def test_download_gives_up_after_max_retries_with_injected_clock(tmp_path, served):
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    with EprintServer(served) as server:
        server.failures["2111.08717"] = [(500, {})] * 10
        results = download_eprints(["2111.08717", "2306.00001v2"], tmp_path, base_url=server.url, delay_s=3,
                                   max_retries=3, user_agent=UA, sleep=sleep, clock=lambda: now[0])
    assert [r.status for r in results] == ["failed", "downloaded"]
    assert results[0].detail == "HTTP 500"
    assert slept == [3.0, 6.0, 12.0, 3.0]  # backoff after each failure; the next id waits the delay only
    assert [entry[1] for entry in server.log] == ["2111.08717"] * 4 + ["2306.00001v2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2306.00001v2.gz"]


def test_download_refuses_oversized_bodies(tmp_path, served):
    with EprintServer(served) as server:
        results = download_eprints(["2111.08717"], tmp_path, base_url=server.url, delay_s=0, user_agent=UA,
                                   max_bytes=10_000)
    assert results[0].status == "failed" and "too-large" in results[0].detail
    assert list(tmp_path.iterdir()) == []


def test_default_user_agent_names_the_tool_and_contact(monkeypatch):
    from astrodata.sources.eprints import default_user_agent

    monkeypatch.setenv("ASTRODATA_CONTACT", "mailto:someone@example.org")
    assert default_user_agent().startswith("astrodata/") and "mailto:someone@example.org" in default_user_agent()
    monkeypatch.delenv("ASTRODATA_CONTACT")
    assert "ASTRODATA_CONTACT" in default_user_agent()
