"""Crafted hostile e-prints, written at test time (no binaries are committed).

`make_hostile_eprints(folder)` writes every case into `folder` and returns {file name: expected},
where expected is "<stage>:<reason>":
- `unpack:<reason>`  `unpack_eprint` raises `EprintError` with exactly that reason;
- `flatten:<reason>` unpacking works, `flatten` raises `EprintError` with that reason;
- `ok:<what>`        unpacking and flattening work; <what> names the trap that must be handled
                     (e.g. `latin-1`: the encoding recorded; `missing-input`: a hostile \\input recorded
                     as missing, nothing read from outside the e-print);
- `latex:<what>`     unpacking and flattening work; the trap is for the LaTeX-to-text stage, whose run
                     must end with a converted document or a recorded error, within its time limit.
The file stem is the e-print id (each one is unique). Everything is deterministic (seeded).
"""

from __future__ import annotations

import gzip
import io
import os
import random
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

DOC = (
    "\\documentclass{article}\n\\title{A harmless paper}\n\\begin{document}\n\\maketitle\n"
    "\\section{Introduction}\nStars form in molecular clouds.\n\\end{document}\n"
)
PROSE = "Stars form in molecular clouds and live for billions of years.\n"
MB = 1 << 20
BIG = 300 * MB  # over the default total cap of 256 MB


def doc(body: str, preamble: str = "") -> str:
    return f"\\documentclass{{article}}\n{preamble}\\begin{{document}}\n{body}\n\\end{{document}}\n"


def member(name: str, data: bytes | str = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    payload = data.encode() if isinstance(data, str) else data
    info.size = len(payload) if kind == tarfile.REGTYPE else 0
    return info, payload


def tar(*members: tuple, fmt: int = tarfile.PAX_FORMAT, encoding: str = "utf-8") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding=encoding, errors="surrogateescape") as tf:
        for info, payload in members:
            tf.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return buf.getvalue()


def gz(data: bytes | str, fname: str | None = None) -> bytes:
    payload = data.encode() if isinstance(data, str) else data
    buf = io.BytesIO()
    with gzip.GzipFile(filename=fname or "", fileobj=buf, mode="wb", mtime=0) as fh:
        fh.write(payload)
    return buf.getvalue()


def tgz(*members: tuple, **kw) -> bytes:
    return gz(tar(*members, **kw))


def header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.USTAR_FORMAT)


def sparse_tar(path: Path, sizes: list[int]) -> None:
    """A plain tar whose members hold `sizes` bytes of zeros, written as holes (no disk used)."""
    with open(path, "wb") as fh:
        for i, size in enumerate(sizes):
            fh.write(header(f"part{i}.tex", size))
            fh.seek(fh.tell() + (size + 511) // 512 * 512)
        fh.truncate(fh.tell() + 1024)


def gzip_bomb_stream(payload_chunk: bytes, n: int, prefix: bytes = b"") -> bytes:
    """One gzip stream of `prefix` + `payload_chunk` * n, compressed chunk by chunk."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(prefix)] + [comp.compress(payload_chunk) for _ in range(n)]
    return b"".join(parts) + comp.flush()


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def random_words(rng: random.Random, n_bytes: int) -> str:
    """Prose-like words (compresses ~3x, unlike a repeated word); a random 64 KB block, tiled."""
    vocab = ["star", "galaxy", "redshift", "halo", "flux", "orbit", "disk", "accretion", "nebula", "quasar",
             "spectrum", "cluster", "lensing", "pulsar", "binary", "merger", "metallicity", "dust"]
    block = " ".join(rng.choices(vocab, k=min(n_bytes, 1 << 16) // 6)) + " "
    return (block * (n_bytes // len(block) + 1))[:n_bytes]


def empty_members(n: int) -> bytes:
    """A plain tar of `n` empty members, headers written directly (tarfile.addfile is 10x slower)."""
    return b"".join(header(f"f{i}.tex", 0) for i in range(n)) + bytes(1024)


def _cases(rng: random.Random) -> dict[str, tuple[str, bytes | Callable[[Path], None]]]:
    ms = member("ms.tex", DOC)
    junk = rng.randbytes(4096)
    png = b"\x89PNG\r\n\x1a\n" + rng.randbytes(2048)
    good = tgz(ms, member("fig.png", rng.randbytes(200_000)))
    two = tar(ms, member("intro.tex", "Intro text.\n"))
    bad_mid = bytearray(two)
    bad_mid[1024 + 148 : 1024 + 156] = b"0000000\x00"  # second member's header checksum
    include_bomb = [member("ms.tex", doc("\\input{l0}"))] + [
        member(f"l{i}.tex", f"\\input{{l{i + 1}}}\n" * 10) for i in range(9)
    ] + [member("l9.tex", "x" * 100_000)]
    chain = [member("ms.tex", doc("\\input{c0}"))] + [member(f"c{i}.tex", f"level {i}\n\\input{{c{i + 1}}}\n")
                                                       for i in range(100)]
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("ms.tex", DOC)
    latin1 = doc("Universit\u00e9 de Gen\u00e8ve, \u00e9toiles \u00e0 neutrons.").encode("latin-1")
    mixed = doc("Bytes \xff\xfe then ASCII.").encode("latin-1") + b"\x93quoted\x94"
    nested_args = "\\x{" * 40 + "a" + "}" * 40

    return {
        # --- escaping the root, links, devices: the whole e-print is refused -------------------
        "traversal-dotdot.tar.gz": ("unpack:path-traversal", tgz(member("../evil.tex", DOC))),
        "traversal-absolute.tar.gz": ("unpack:path-traversal", tgz(member("/etc/evil.tex", DOC))),
        "traversal-nested.tar.gz": ("unpack:path-traversal", tgz(member("a/../../evil.tex", DOC))),
        "traversal-backslash.tar.gz": ("unpack:path-traversal", tgz(member("..\\..\\evil.tex", DOC))),
        "traversal-drive.tar.gz": ("unpack:path-traversal", tgz(member("C:\\Windows\\evil.tex", DOC))),
        "traversal-after-good.tar.gz": ("unpack:path-traversal", tgz(ms, member("../../evil.tex", DOC))),
        "traversal-plain.tar": ("unpack:path-traversal", tar(member("../evil.tex", DOC))),
        "traversal-pax-path.tar.gz": ("unpack:path-traversal", tgz(_pax(member("ok.tex", DOC), "../../evil.tex"))),
        "traversal-gnu-longname.tar.gz": (
            "unpack:path-traversal", tgz(member("../" + "a/" * 60 + "evil.tex", DOC), fmt=tarfile.GNU_FORMAT)),
        "traversal-dir-member.tar.gz": ("unpack:path-traversal", tgz(member("../outside", kind=tarfile.DIRTYPE), ms)),
        "symlink-absolute.tar.gz": ("unpack:symlink", tgz(ms, member("pw.tex", kind=tarfile.SYMTYPE, link="/etc/passwd"))),
        "symlink-relative.tar.gz": ("unpack:symlink", tgz(member("up.tex", kind=tarfile.SYMTYPE, link="../../../etc/passwd"))),
        "symlink-dir-then-file.tar.gz": (
            "unpack:symlink", tgz(member("sub", kind=tarfile.SYMTYPE, link="/tmp"), member("sub/evil.tex", DOC))),
        "symlink-internal.tar.gz": ("unpack:symlink", tgz(ms, member("alias.tex", kind=tarfile.SYMTYPE, link="ms.tex"))),
        "hardlink-outside.tar.gz": ("unpack:hardlink", tgz(member("h.tex", kind=tarfile.LNKTYPE, link="/etc/passwd"))),
        "hardlink-internal.tar.gz": ("unpack:hardlink", tgz(ms, member("copy.tex", kind=tarfile.LNKTYPE, link="ms.tex"))),
        "device-char.tar.gz": ("unpack:device", tgz(ms, _dev(member("null.tex", kind=tarfile.CHRTYPE), 1, 3))),
        "device-block.tar.gz": ("unpack:device", tgz(ms, _dev(member("sda.tex", kind=tarfile.BLKTYPE), 8, 0))),
        "device-fifo.tar.gz": ("unpack:device", tgz(ms, member("pipe.tex", kind=tarfile.FIFOTYPE))),
        # --- bombs -------------------------------------------------------------------------------
        "bomb-many-members.tar.gz": ("unpack:too-many-members", gz(empty_members(5001))),
        "bomb-claims-1gb.tar.gz": ("unpack:too-large", gz(header("ms.tex", 1 << 30) + DOC.encode())),
        "bomb-huge-member.tar": ("unpack:too-large", lambda p: sparse_tar(p, [BIG])),
        "bomb-huge-total.tar": ("unpack:too-large", lambda p: sparse_tar(p, [150 * MB, 150 * MB])),
        "bomb-gzip-zeros.gz": ("unpack:gzip-bomb", gzip_bomb_stream(bytes(MB), 24)),
        "bomb-gzip-tar.tar.gz": ("unpack:gzip-bomb", gzip_bomb_stream(b" " * MB, 24, header("ms.tex", 24 * MB))),
        "bomb-gzip-multimember.gz": ("unpack:gzip-bomb", gz(bytes(MB)) * 200),
        "nested-gzip.gz": ("unpack:nested-archive", gz(gz(DOC))),
        "nested-gzip-tar.tar.gz": ("unpack:nested-archive", gz(tgz(ms))),
        # --- not a LaTeX source ------------------------------------------------------------------
        "junk-random": ("unpack:not-latex", junk),
        "junk-random-named.tar.gz": ("unpack:not-latex", b"\x00\x01" + junk),
        "junk-gzipped.gz": ("unpack:not-latex", gz(junk)),
        "pdf-only.pdf": ("unpack:pdf-only", b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"),
        "pdf-gzipped.gz": ("unpack:pdf-only", gz(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n")),
        "postscript-only": ("unpack:ps-only", b"%!PS-Adobe-3.0\n%%Title: paper\nshowpage\n"),
        "html-error-page": ("unpack:not-latex", b"<!DOCTYPE html><html><body>Not Found</body></html>"),
        "zip-archive.tar.gz": ("unpack:not-latex", zipped.getvalue()),
        "images-only.tar.gz": ("unpack:not-latex", tgz(member("fig1.png", png), member("fig2.eps", png))),
        "plain-prose.tex": ("unpack:not-latex", b"Just an abstract in plain words, no markup at all.\n"),
        "nul-bytes.tex": ("unpack:not-latex", DOC.encode().replace(b"Stars", b"St\x00ars")),
        "utf16.tex": ("unpack:not-latex", DOC.encode("utf-16")),
        # --- empty, truncated, corrupt -------------------------------------------------------------
        "empty-file.tar.gz": ("unpack:empty", b""),
        "empty-tar-zeros.tar": ("unpack:empty", bytes(10240)),
        "empty-gzip.gz": ("unpack:empty", gz(b"")),
        "empty-tar.tar.gz": ("unpack:empty", tgz()),
        "truncated-gzip.tar.gz": ("unpack:corrupt-archive", good[: len(good) // 2]),
        "truncated-tar.tar": ("unpack:corrupt-archive", tar(member("ms.tex", DOC * 40))[:2000]),
        "truncated-tar-binary.tar.gz": ("unpack:corrupt-archive", gz(tar(ms, member("fig.png", png * 20))[:20_000])),
        "corrupt-crc.tar.gz": ("unpack:corrupt-archive", corrupt(good, len(good) - 6)),
        "corrupt-deflate.gz": ("unpack:corrupt-archive", corrupt(gz(random_words(rng, 50_000)), 2000)),
        "corrupt-header-mid.tar.gz": ("unpack:corrupt-archive", gz(bytes(bad_mid))),
        # --- member names ------------------------------------------------------------------------
        "name-newline.tar.gz": ("unpack:bad-name", tgz(member("ms\n.tex", DOC))),
        "name-nul-pax.tar.gz": ("unpack:bad-name", tgz(_pax(member("ms.tex", DOC), "ms\x00/../../x.tex"))),
        "name-bad-utf8.tar.gz": ("unpack:bad-name", tgz(member("ms\udcff.tex", DOC), fmt=tarfile.GNU_FORMAT)),
        "name-too-long.tar.gz": ("unpack:bad-name", tgz(member("d/" * 2500 + "ms.tex", DOC))),
        "name-unicode.tar.gz": ("ok:unicode-name", tgz(
            member("ms.tex", doc("\\input{sections/introducci\u00f3n}")),
            member("sections/introducci\u00f3n.tex", "Texto de la introducci\u00f3n.\n"))),
        # --- flatten-level: no main file, include bombs ----------------------------------------------
        "no-begin-document.tar.gz": ("flatten:no-main-file", tgz(member("ms.tex", "\\documentclass{article}\nText.\n"))),
        "only-bib.tar.gz": ("flatten:no-main-file", tgz(member("refs.bib", "@article{a, title={T}, year=2020}\n"))),
        "only-sty.tar.gz": ("flatten:no-main-file", tgz(member("x.sty", "\\newcommand{\\msun}{M_\\odot}\n"))),
        "docclass-in-comment.tex": ("flatten:no-main-file", b"% \\documentclass{article}\n\\begin{document}\nx\n\\end{document}\n"),
        "empty-tex-member.tar.gz": ("flatten:no-main-file", tgz(member("ms.tex", b""))),
        "include-bomb.tar.gz": ("flatten:include-bomb", tgz(*include_bomb)),
        # --- handled traps: the document converts, the trap is recorded -------------------------------
        "latin1.tex": ("ok:latin-1", latin1),
        "latin1-member.tar.gz": ("ok:latin-1", tgz(member("ms.tex", doc("\\input{intro}")),
                                                   member("intro.tex", "Sch\u00f6ne Sterne.\n".encode("latin-1")))),
        "invalid-utf8.gz": ("ok:latin-1", gz(mixed)),
        "utf8-bom.tex": ("ok:utf-8", b"\xef\xbb\xbf" + DOC.encode()),
        "crlf.tar.gz": ("ok:crlf", tgz(member("ms.tex", DOC.replace("\n", "\r\n")))),
        "cr-only.tex": ("ok:crlf", DOC.replace("\n", "\r").encode()),
        "input-self.tex": ("ok:input-cycle", doc("Before.\n\\input{main}\nAfter.").encode()),
        "input-cycle.tar.gz": ("ok:input-cycle", tgz(member("ms.tex", doc("\\input{a}")), member("a.tex", "A\n\\input{b}\n"),
                                                     member("b.tex", "B\n\\include{a}\n"))),
        "input-etc-passwd.tar.gz": ("ok:missing-input", tgz(member("ms.tex", doc(PROSE + "\\input{/etc/passwd}\n\\input /etc/hosts ")))),
        "input-dotdot.tar.gz": ("ok:missing-input", tgz(member("ms.tex", doc(PROSE + "\\input{../../secret}\\include{../secret}")))),
        "import-outside.tar.gz": ("ok:missing-input", tgz(member("ms.tex", doc(PROSE + "\\import{/etc/}{passwd}\n\\subimport{../../}{secret}")))),
        "input-many-missing.tex": ("ok:missing-input", doc(PROSE + "".join(f"\\input{{nothere-{i}}}\n" for i in range(10_000))).encode()),
        "input-deep-chain.tar.gz": ("ok:input-depth", tgz(*chain)),
        "gzip-fname-traversal.gz": ("ok:gzip-fname", gz(DOC, fname="../../etc/passwd")),
        "duplicate-members.tar.gz": ("ok:duplicate-member", tgz(member("ms.tex", "old"), ms)),
        "archive-member.tar.gz": ("ok:skipped-member", tgz(ms, member("figs.tar.gz", tgz(member("f.png", png))))),
        "dot-members.tar.gz": ("ok:dot-path", tgz(member(".", kind=tarfile.DIRTYPE), member("./ms.tex", DOC))),
        "deep-folder-main.tar.gz": ("ok:subfolder-main", tgz(member("a/b/c/ms.tex", DOC))),
        "multi-member-gzip.gz": ("ok:multi-member-gzip", gz(DOC[:50]) + gz(DOC[50:])),
        "trailing-garbage.gz": ("ok:trailing-garbage", gz(DOC) + b"garbage after the gzip member"),
        "control-chars.tex": ("ok:control-chars", DOC.replace("Stars", "\x1b[31mStars\x0c").encode()),
        "multiple-mains.tar.gz": ("ok:multiple-mains", tgz(member("draft/old.tex", DOC), member("reply.tex", DOC), ms)),
        "endinput.tex": ("ok:endinput", (DOC + "\\endinput\n").encode()),
        # --- LaTeX-level traps (for the converter) ------------------------------------------------------
        "def-recursion.tex": ("latex:macro-recursion", doc("\\a", "\\def\\a{\\a}\n").encode()),
        "def-recursion-args.tex": ("latex:macro-recursion", doc("\\a{x}", "\\def\\a#1{\\a{#1#1}}\n").encode()),
        "newcommand-loop.tex": ("latex:macro-recursion", doc("\\x", "\\newcommand{\\x}{\\y}\n\\newcommand{\\y}{\\x}\n").encode()),
        "renewcommand-self.tex": ("latex:macro-recursion", doc("\\x", "\\newcommand{\\x}{a}\\renewcommand{\\x}{\\x\\x}\n").encode()),
        "def-exponential.tex": ("latex:macro-blowup", doc("\\xa", "".join(
            f"\\def\\x{_alpha(i)}{{\\x{_alpha(i + 1)}\\x{_alpha(i + 1)}}}\n" for i in range(30))).encode()),
        "nested-args-exponential.tex": ("latex:macro-blowup", doc(nested_args, "\\newcommand{\\x}[1]{#1#1}\n").encode()),
        "newenvironment-recursion.tex": ("latex:macro-recursion", doc(
            "\\begin{foo}x\\end{foo}", "\\newenvironment{foo}{\\begin{foo}}{\\end{foo}}\n").encode()),
        "unbalanced-open.tex": ("latex:unbalanced", doc("\\textbf{bold never closed \\section{Half").encode()),
        "unbalanced-close.tex": ("latex:unbalanced", doc("text }}}} more } text").encode()),
        "unbalanced-math.tex": ("latex:unbalanced", doc("$x^2 \\begin{equation} a = b").encode()),
        "unclosed-verbatim.tex": ("latex:unbalanced", doc("\\verb|abc \\begin{verbatim} never ends").encode()),
        "deep-braces.tex": ("latex:deep-nesting", doc("{" * 100_000 + "x" + "}" * 100_000).encode()),
        "oneline-10mb.tex": ("latex:huge-line", doc(random_words(rng, 10 * MB)).encode()),
        "macro-missing-args.tex": ("latex:bad-arguments", doc(
            "\\x \\y", "\\newcommand{\\x}[9]{#1#2#3#4#5#6#7#8#9}\n\\def\\y#1#2{#2}\n").encode()),
        "csname-def.tex": ("latex:macro-recursion", doc(
            "\\csname a\\endcsname", "\\expandafter\\def\\csname a\\endcsname{\\csname a\\endcsname}\n").encode()),
        "catcode-change.tex": ("latex:catcode", doc("{text} \\catcode`\\{=12 { more", "\\catcode`\\$=12\n").encode()),
        "many-macros.tex": ("latex:many-macros", doc(" ".join(f"\\mac{_alpha(i)}" for i in range(0, 20_000, 7)), "".join(
            f"\\newcommand{{\\mac{_alpha(i)}}}{{word{i}}}\n" for i in range(20_000))).encode()),
        "newcommand-malformed.tex": ("latex:malformed-definition", doc(
            "\\foo", "\\newcommand{\\foo}[x]{#1}\n\\newcommand\\bar\n\\def\\baz#\n\\newenvironment{e}\n").encode()),
    }


def _pax(entry: tuple, path: str) -> tuple:
    entry[0].pax_headers = {"path": path}
    return entry


def _dev(entry: tuple, major: int, minor: int) -> tuple:
    entry[0].devmajor, entry[0].devminor = major, minor
    return entry


def _alpha(i: int) -> str:
    """Macro names are letters only: 0 -> a, 25 -> z, 26 -> ba, ..."""
    s = ""
    while True:
        s = chr(97 + i % 26) + s
        i //= 26
        if not i:
            return s


_SESSION: dict[int, tuple[Path, dict[str, str]]] = {}


def session_hostile_eprints(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One generated set per pytest session (`tmp_path_factory`), shared by the test modules."""
    key = id(tmp_path_factory)
    if key not in _SESSION:
        folder = tmp_path_factory.mktemp("hostile")
        _SESSION[key] = folder, make_hostile_eprints(folder)
    return _SESSION[key]


def make_hostile_eprints(folder: Path) -> dict[str, str]:
    """Write every hostile e-print into `folder`; return {file name: "<stage>:<reason>"}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (outcome, content) in _cases(random.Random(20240101)).items():
        path = folder / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        expected[name] = outcome
    return expected


if __name__ == "__main__":  # write the set somewhere to poke at it by hand
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-eprints")
    for name, outcome in make_hostile_eprints(target).items():
        print(f"{outcome:<32} {name}  ({os.path.getsize(target / name)} bytes)")
