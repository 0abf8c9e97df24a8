"""arXiv e-prints in, decoded LaTeX sources out: safe in-memory unpacking and the three sources.

An e-print is whatever arXiv's `/e-print/<id>` endpoint serves: a gzipped tar of the sources, a
lone gzipped .tex, rarely a plain .tex or tar, or a PDF when no source was submitted. We sniff the
format from magic bytes (file names lie), stream-decompress under caps (size, member count,
gzip ratio) and never write anything to disk: the text members are decoded into a dict. An archive
that tries to escape its root, or ships links or device nodes, is hostile and rejected as a whole;
binary members (figures, nested archives) are skipped and listed in `Eprint.skipped`.

Sources: a local folder (`iter_local_eprints`), arXiv's bulk source tars (`iter_bulk_tar`) and the
polite e-print downloader (`download_eprints`).
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import re
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx

from astrodata.core.arxiv_ids import EPRINT_SUFFIXES, filename_for_id, id_from_filename
from astrodata.core.http import RetryPolicy, user_agent_for

log = logging.getLogger(__name__)

MB = 1 << 20
TEXT_SUFFIXES = frozenset(
    {".tex", ".ltx", ".latex", ".bbl", ".sty", ".cls", ".bib", ".def", ".txt", ".cfg", ".clo", ".bst", ".tikz", ""}
)
_CHUNK = 1 << 16


class EprintError(Exception):
    """An e-print that cannot be used; `reason` is a short machine-readable tag for the catalog."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class UnpackLimits:
    """Caps against tar and gzip bombs. The ratio is only judged past `ratio_floor_bytes`, because
    a tiny tar (10 KiB of mostly zero padding) legitimately compresses 50x."""

    max_total_bytes: int = 256 * MB  # everything decompressed, binaries included
    max_file_bytes: int = 32 * MB  # one text member; larger ones are skipped
    max_members: int = 5000
    max_gzip_ratio: float = 200.0
    ratio_floor_bytes: int = 16 * MB
    max_name_chars: int = 1024


@dataclass
class Eprint:
    eprint_id: str
    kind: str  # tar | gzip-tex | tex
    files: dict[str, str]  # relpath -> decoded text (text-like members only), LF line endings
    encodings: dict[str, str]  # relpath -> "utf-8" | "latin-1"
    skipped: list[str] = field(default_factory=list)  # "relpath (why)" for members left out

    @property
    def encoding(self) -> str:
        """One word for the catalog: latin-1 as soon as one file needed it."""
        return "latin-1" if "latin-1" in self.encodings.values() else "utf-8"


# --- byte streams with caps ---------------------------------------------------------------------


class _Reader:
    """A forward-only byte stream with `read`/`peek` and a cap on the bytes it delivers."""

    def __init__(self, limits: UnpackLimits) -> None:
        self.limits = limits
        self.delivered = 0
        self._buf = bytearray()
        self._eof = False

    def _next_chunk(self) -> bytes:
        raise NotImplementedError

    def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._eof:
            chunk = self._next_chunk()
            if not chunk:
                self._eof = True
                break
            self.delivered += len(chunk)
            if self.delivered > self.limits.max_total_bytes:
                raise EprintError("too-large", f"more than {self.limits.max_total_bytes} bytes unpacked")
            self._buf += chunk

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[:n])

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.limits.max_total_bytes + 1
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class _Plain(_Reader):
    def __init__(self, raw: BinaryIO, limits: UnpackLimits) -> None:
        super().__init__(limits)
        self.raw = raw

    def _next_chunk(self) -> bytes:
        return self.raw.read(_CHUNK)


class _Gunzip(_Reader):
    """Streaming gunzip (multi-member aware) that stops at the ratio and size caps.

    `gzip.decompress` of untrusted input allocates whatever the bomb expands to; here output is
    produced in bounded pieces and the ratio is checked against the compressed bytes consumed."""

    def __init__(self, raw: BinaryIO, limits: UnpackLimits) -> None:
        super().__init__(limits)
        self.raw = raw
        self.consumed = 0
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""

    def _next_chunk(self) -> bytes:
        while True:
            if self._d.eof and not self._start_next_member():
                return b""
            if not self._pending:
                self._pending = self.raw.read(_CHUNK)
                if not self._pending:
                    raise EprintError("corrupt-archive", "truncated gzip stream")
                self.consumed += len(self._pending)
            try:
                out = self._d.decompress(self._pending, _CHUNK)
            except zlib.error as exc:
                raise EprintError("corrupt-archive", f"gzip: {exc}") from None
            self._pending = self._d.unconsumed_tail
            produced = self.delivered + len(out)
            used = max(1, self.consumed - len(self._pending) - len(self._d.unused_data))
            if produced > self.limits.ratio_floor_bytes and produced > self.limits.max_gzip_ratio * used:
                raise EprintError("gzip-bomb", f"{produced} bytes out of {used} compressed")
            if out:
                return out

    def _start_next_member(self) -> bool:
        """After one gzip member ends, go on with a concatenated one; trailing junk ends the stream
        (ignored, as `gzip -d` does)."""
        rest = self._d.unused_data
        if not rest:
            rest = self.raw.read(_CHUNK)
            self.consumed += len(rest)
        if not rest.startswith(b"\x1f\x8b"):
            return False
        self._d = zlib.decompressobj(wbits=31)
        self._pending = rest
        return True


def _gzip_fname(head: bytes) -> str | None:
    """The original file name stored in a gzip header (FNAME), if any."""
    if len(head) < 10 or not head[3] & 0x08:
        return None
    pos = 10
    if head[3] & 0x04:  # FEXTRA
        pos += 2 + int.from_bytes(head[10:12], "little")
    end = head.find(b"\x00", pos)
    return head[pos:end].decode("latin-1") if end > pos else None


# --- format sniffing ----------------------------------------------------------------------------


def _looks_like_tar(head: bytes) -> bool:
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    try:  # pre-POSIX tar: no magic, but the header checksum must hold
        stored = int(head[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(head[:148]) + 8 * 32 + sum(head[156:512])


def _is_binary(data: bytes) -> bool:
    """NUL bytes or many control characters: not a text file (images, junk, UTF-16). Trailing NUL
    padding (left by some editors and block-copy tools) does not count: callers strip it."""
    if b"\x00" in data:
        return True
    sample = data[:8192]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13) or b == 127)
    return controls > 0.05 * len(sample)


def _decode(data: bytes) -> tuple[str, str]:
    """UTF-8 (BOM dropped) else latin-1, which never fails; line endings normalised to LF."""
    try:
        text, encoding = data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = data.decode("latin-1"), "latin-1"
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


_LATEX_COMMAND = re.compile(r"\\[A-Za-z@]")


def _sniff_non_source(head: bytes) -> EprintError | None:
    if head.startswith(b"%PDF-"):
        return EprintError("pdf-only", "arXiv serves only a PDF for this e-print")
    if head.startswith(b"%!PS"):
        return EprintError("ps-only", "PostScript without sources")
    if head.startswith(b"PK\x03\x04"):
        return EprintError("not-latex", "zip archive (arXiv serves gzip/tar)")
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return EprintError("not-latex", "HTML document")
    return None


# --- unpacking ----------------------------------------------------------------------------------


def unpack_eprint(
    source: Path | str | bytes, eprint_id: str | None = None, limits: UnpackLimits = UnpackLimits()  # noqa: B008
) -> Eprint:
    """Decode one e-print (path or raw bytes) in memory; raise `EprintError(reason)` when unusable."""
    if isinstance(source, bytes):
        raw: BinaryIO = io.BytesIO(source)
        eprint_id = eprint_id or "eprint"
    else:
        raw = open(source, "rb")  # noqa: SIM115 - closed below
        eprint_id = eprint_id or id_from_filename(Path(source).name)
    try:
        return _unpack(raw, eprint_id, limits)
    except EprintError as exc:
        exc.detail = f"{eprint_id}: {exc.detail}"
        exc.args = (f"{exc.reason}: {exc.detail}",)
        raise
    finally:
        raw.close()


def _unpack(raw: BinaryIO, eprint_id: str, limits: UnpackLimits) -> Eprint:
    stream: _Reader = _Plain(raw, limits)
    head = stream.peek(1024)
    if not head:
        raise EprintError("empty", "zero-byte file")
    gz_name = None
    if head.startswith(b"\x1f\x8b"):
        gz_name = _gzip_fname(head)
        stream = _Gunzip(stream, limits)
        head = stream.peek(1024)
        if not head:
            raise EprintError("empty", "gzip of nothing")
        if head.startswith(b"\x1f\x8b"):
            raise EprintError("nested-archive", "gzip inside gzip")
    problem = _sniff_non_source(head)
    if problem:
        raise problem
    if _looks_like_tar(head):
        return _unpack_tar(stream, eprint_id, limits)
    if not head.strip(b"\x00"):  # an empty tar is all zeros; so is a gzip bomb, which the caps stop
        while chunk := stream.read(_CHUNK):
            if chunk.strip(b"\x00"):
                raise EprintError("not-latex", "binary data after zero padding")
        raise EprintError("empty", "only zero bytes (an empty tar)")
    data = stream.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise EprintError("too-large", f"single file over {limits.max_file_bytes} bytes")
    data = data.rstrip(b"\x00")
    if _is_binary(data):
        raise EprintError("not-latex", "binary data")
    text, encoding = _decode(data)
    if not _LATEX_COMMAND.search(text):
        raise EprintError("not-latex", "text without a single LaTeX command")
    name = posixpath.basename((gz_name or "").replace("\\", "/"))
    if posixpath.splitext(name)[1].lower() not in (".tex", ".ltx", ".latex"):
        name = "main.tex"
    kind = "gzip-tex" if isinstance(stream, _Gunzip) else "tex"
    return Eprint(eprint_id, kind, {name: text}, {name: encoding})


def _safe_member_name(name: str, limits: UnpackLimits) -> str:
    """Normalise a member path, refusing any that could land outside the e-print's root."""
    if len(name) > limits.max_name_chars:
        raise EprintError("bad-name", f"member name of {len(name)} characters")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise EprintError("bad-name", f"control or undecodable characters in member name {name!r}")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        raise EprintError("path-traversal", f"absolute member path {name!r}")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise EprintError("path-traversal", f"member path escapes the root: {name!r}")
    return "/".join(parts)  # "" for the root itself ("./")


class _RecordingTarInfo(tarfile.TarInfo):
    """Remembers why tarfile stopped: it ends silently on a bad or truncated header mid-archive."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tf)
        except tarfile.HeaderError as exc:
            tf.astrodata_end = exc  # type: ignore[attr-defined]
            raise


_PAX_HEADERS = (tarfile.XGLTYPE, tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)


def _unpack_tar(stream: _Reader, eprint_id: str, limits: UnpackLimits) -> Eprint:
    files: dict[str, str] = {}
    encodings: dict[str, str] = {}
    skipped: list[str] = []
    declared = 0
    n_members = 0
    try:
        tf = tarfile.open(fileobj=stream, mode="r|", tarinfo=_RecordingTarInfo)  # type: ignore[call-overload]
        for member in tf:
            if member.type in _PAX_HEADERS:  # metadata for the members, not a file (tarfile folds them in)
                continue
            n_members += 1
            if n_members > limits.max_members:
                raise EprintError("too-many-members", f"more than {limits.max_members} members")
            name = _safe_member_name(member.name, limits)
            if member.issym():
                raise EprintError("symlink", f"{name!r} -> {member.linkname!r}")
            if member.islnk():
                raise EprintError("hardlink", f"{name!r} -> {member.linkname!r}")
            if member.ischr() or member.isblk() or member.isfifo():
                raise EprintError("device", f"device or fifo member {name!r}")
            if member.isdir():
                continue
            if not name:
                raise EprintError("bad-name", f"file member without a name: {member.name!r}")
            if not member.isreg() or member.issparse():
                raise EprintError("unsupported-member", f"{name!r} has tar type {member.type!r}")
            declared += member.size
            if declared > limits.max_total_bytes:
                raise EprintError("too-large", f"members declare {declared} bytes")
            if posixpath.splitext(name)[1].lower() not in TEXT_SUFFIXES:
                skipped.append(f"{name} (not a text type)")
                continue
            if member.size > limits.max_file_bytes:
                skipped.append(f"{name} (over {limits.max_file_bytes} bytes)")
                continue
            data = tf.extractfile(member).read().rstrip(b"\x00")  # type: ignore[union-attr]
            if _is_binary(data):
                skipped.append(f"{name} (binary)")
                continue
            files[name], encodings[name] = _decode(data)
        end = getattr(tf, "astrodata_end", None)
        if isinstance(end, tarfile.InvalidHeaderError | tarfile.TruncatedHeaderError):
            raise EprintError("corrupt-archive", f"tar header at byte {tf.offset}: {end}")
    except tarfile.TarError as exc:
        raise EprintError("corrupt-archive", f"tar: {exc}") from None
    if not n_members:
        raise EprintError("empty", "tar without members")
    if not files:
        raise EprintError("not-latex", f"no text members; skipped {skipped[:5]}")
    return Eprint(eprint_id, "tar", files, encodings, skipped)


# --- sources ------------------------------------------------------------------------------------

_NOT_EPRINTS = (".part", ".json", ".jsonl", ".md", ".csv", ".lock")


def iter_local_eprints(folder: Path) -> Iterator[tuple[str, Path]]:
    """(id, path) for each e-print file in `folder`, sorted by id; the file stem is the id.

    When one id has several files (arXiv's `.tar.gz` beside the lone `.gz`), the first in
    `EPRINT_SUFFIXES` order wins (the archive holds the bibliography too); the others are logged."""
    by_id: dict[str, list[Path]] = {}
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.name.lower().endswith(_NOT_EPRINTS):
            continue
        by_id.setdefault(id_from_filename(path.name), []).append(path)
    for eprint_id in sorted(by_id):
        paths = sorted(by_id[eprint_id], key=_suffix_rank)
        for other in paths[1:]:
            log.warning("e-print %s: using %s, ignoring %s", eprint_id, paths[0].name, other.name)
        yield eprint_id, paths[0]


def _suffix_rank(path: Path) -> int:
    name = path.name.lower()
    return next((i for i, s in enumerate(EPRINT_SUFFIXES) if name.endswith(s)), len(EPRINT_SUFFIXES))


def iter_bulk_tar(tar_path: Path, max_member_bytes: int = UnpackLimits.max_total_bytes) -> Iterator[tuple[str, bytes]]:
    """(id, raw e-print bytes) from an arXiv bulk source tar (`arXiv_src_YYMM_NNN.tar`).

    Members are `<yymm>/<id>.gz` (or `.pdf`); the tar itself is streamed, one member in memory at
    a time. Members that are not regular files or are over `max_member_bytes` are logged and skipped;
    a damaged tar (say, a partial download) raises `EprintError` naming it, after its good members."""
    n = 0
    try:
        with open(tar_path, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tf:
            for member in tf:
                if member.isdir():
                    continue
                if not member.isreg() or member.size > max_member_bytes:
                    log.warning("%s: skipping member %r (type %r, %d bytes)", tar_path, member.name, member.type,
                                member.size)
                    continue
                data = tf.extractfile(member).read()  # type: ignore[union-attr]
                n += 1
                yield id_from_filename(posixpath.basename(member.name)), data
    except tarfile.TarError as exc:
        raise EprintError("corrupt-archive", f"bulk tar {tar_path} after {n} e-prints: {exc}") from None


def default_user_agent() -> str:
    """arXiv asks robots to identify themselves; `ASTRODATA_CONTACT` adds an e-mail or URL."""
    return user_agent_for("e-print fetcher")


@dataclass
class Download:
    eprint_id: str
    status: str  # downloaded | exists | failed
    path: Path | None = None
    detail: str = ""


def download_eprints(
    ids: Iterable[str],
    dest_dir: Path,
    base_url: str = "https://arxiv.org/e-print/",
    delay_s: float = 3.0,
    user_agent: str | None = None,
    max_retries: int = 5,
    max_retry_wait_s: float = 600.0,
    max_bytes: int = UnpackLimits.max_total_bytes,
    timeout_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[Download]:
    """Fetch e-prints politely: `delay_s` between requests, skipping ids already in `dest_dir`.

    Retries follow the shared policy (`astrodata.core.http`): 408/409/429/5xx (not 501) and network
    errors are retried up to `max_retries` times, waiting `delay_s`, 2 x `delay_s`, 4 x ... or the
    server's Retry-After, never more than `max_retry_wait_s`; other statuses are final.

    Each file goes to `<name>.part` and is renamed when complete, so an interrupted run leaves no
    half file that a later run would mistake for done. The extension follows the magic bytes."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    present = {id_from_filename(p.name): p for p in dest_dir.iterdir()
               if p.is_file() and not p.name.endswith(_NOT_EPRINTS)}
    headers = {"User-Agent": user_agent or default_user_agent()}
    last_request = [float("-inf")]

    def polite_get(client: httpx.Client, url: str, part: Path) -> httpx.Response:
        wait = last_request[0] + delay_s - clock()
        if wait > 0:
            sleep(wait)
        try:
            with client.stream("GET", url) as resp:
                if resp.status_code == 200:
                    size = 0
                    with open(part, "wb") as out:
                        for chunk in resp.iter_bytes(_CHUNK):
                            size += len(chunk)
                            if size > max_bytes:
                                raise EprintError("too-large", f"{url}: more than {max_bytes} bytes")
                            out.write(chunk)
                return resp
        finally:  # the delay runs from the end of a request: slow answers slow us down too
            last_request[0] = clock()

    # One sequential client: plain doubling from the politeness delay (no crowd for jitter to spread).
    policy = RetryPolicy(max_retries, base_s=delay_s, cap_s=max(max_retry_wait_s, delay_s), jitter=False)
    results: list[Download] = []
    with httpx.Client(headers=headers, timeout=timeout_s, follow_redirects=True) as client:
        for eprint_id in ids:
            if eprint_id in present:
                results.append(Download(eprint_id, "exists", present[eprint_id]))
                continue
            stem = filename_for_id(eprint_id)
            part = dest_dir / f"{stem}.part"
            url = base_url + eprint_id
            result = Download(eprint_id, "failed", detail="no attempt")

            def on_retry(retry: int, reason: str, wait: float, eprint_id: str = eprint_id) -> None:
                log.info("e-print %s: %s, retrying in %.1f s", eprint_id, reason, wait)

            try:
                resp = policy.call(lambda url=url, part=part: polite_get(client, url, part), sleep=sleep,
                                   on_retry=on_retry)
            except httpx.TransportError as exc:
                result.detail = f"network: {exc}"
            except EprintError as exc:
                result.detail = str(exc)
            else:
                if resp.status_code == 200:
                    final = dest_dir / (stem + _suffix_for(part))
                    os.replace(part, final)
                    result = Download(eprint_id, "downloaded", final)
                    present[eprint_id] = final
                else:
                    result.detail = f"HTTP {resp.status_code}"
            part.unlink(missing_ok=True)
            if result.status == "failed":
                log.warning("e-print %s not downloaded: %s", eprint_id, result.detail)
            results.append(result)
    return results


def _suffix_for(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"\x1f\x8b"):
        return ".gz"
    if head.startswith(b"%PDF-"):
        return ".pdf"
    return ".tar" if _looks_like_tar(head) else ".tex"
