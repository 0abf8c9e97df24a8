"""arXiv identifiers: the one parser every stage uses (harvest, e-print files, dedup, QA metadata).

Forms accepted, from arXiv's identifier scheme (https://info.arxiv.org/help/arxiv_identifier.html):
new style `YYMM.NNNN` / `YYMM.NNNNN` (from 2015), old style `archive[.SC]/YYMMNNN`, each with an
optional `vN`; also abs/pdf URLs, OAI identifiers (`oai:arXiv.org:`), an `arXiv:` prefix, and the
bulk-tar file stems where old-style ids lose their slash (`astro-ph0601001`).
"""

from __future__ import annotations

import re

_ID_RE = re.compile(
    r"^(?:(?P<new>\d{4}\.\d{4,5})|(?P<arch>[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?)/?(?P<num>\d{7}))(?:v(?P<v>\d+))?$"
)
_ID_PREFIX = re.compile(r"^(?:https?://(?:export\.)?arxiv\.org/(?:abs|pdf)/|oai:arXiv\.org:|arXiv:)", re.I)
# File suffixes of e-prints as arXiv serves them (and a lone .tex/.pdf), longest first.
EPRINT_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".gz", ".tex", ".pdf")


def split_id(raw: str) -> tuple[str, int | None]:
    """`astro-ph/0601001v2` -> (`astro-ph/0601001`, 2); `2401.01234` -> (`2401.01234`, None).

    Raises ValueError for anything that is not an arXiv id."""
    m = _ID_RE.match(_ID_PREFIX.sub("", raw.strip()))
    if not m:
        raise ValueError(f"not an arXiv id: {raw!r}")
    base = m["new"] or f"{m['arch']}/{m['num']}"
    return base, int(m["v"]) if m["v"] else None


def parse_arxiv_id(source_id: str) -> tuple[str, int | None] | None:
    """`split_id`, or None when `source_id` is not an arXiv id (a slug, a Wikipedia title)."""
    try:
        return split_id(source_id)
    except ValueError:
        return None


def id_from_filename(name: str) -> str:
    """`2401.01234v2.tar.gz` -> `2401.01234v2`; `astro-ph0601001.gz` -> `astro-ph/0601001`.

    A stem that is not an arXiv id (a local slug) is returned as it is."""
    for suffix in EPRINT_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    parsed = parse_arxiv_id(name)
    if parsed is None or _ID_PREFIX.match(name):
        return name
    base, version = parsed
    return f"{base}v{version}" if version else base


def filename_for_id(eprint_id: str) -> str:
    """The inverse of `id_from_filename`'s stem: old-style ids lose their slash, as in arXiv's bulk tars."""
    return eprint_id.replace("/", "")
