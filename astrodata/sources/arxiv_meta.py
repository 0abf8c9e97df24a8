"""arXiv metadata: harvest papers by category and date into the catalog's `papers` table.

Three ways in, one record shape out (`Paper`, one row per paper, keyed by the id without version):
- `harvest_api`: the arXiv API through the `arxiv` package (its Client pages, waits the 3-second
  politeness delay and retries). Dates select the first version's submission date (`submittedDate`).
- `harvest_oai`: OAI-PMH `ListRecords` in `arXivRaw` (every version with its date, the default) or
  `arXiv` (split author names, but only the first and latest dates). Dates are OAI datestamps (last
  change of the record), the only selector the protocol has; resumption tokens are followed.
- `harvest_snapshot`: the public metadata snapshot (JSON lines, 4+ GB, also .gz/.zip), streamed line
  by line. Dates select the first version's date (from `versions`, else `update_date`).

Categories are archive-or-category names: `astro-ph` keeps `astro-ph` and every `astro-ph.*`;
`astro-ph.CO` keeps only that one; a paper is kept when any of its categories matches (cross-lists
count). An empty list keeps everything.

Merging: a later harvest of a known paper updates its row, never adds one. The record with the later
latest-version date (then the higher version number; then the newer harvest) wins field by field,
the other fills what the winner lacks (e.g. the API gives no licence, OAI does), and version lists
are united. Per-record parse failures go to the run's errors and the harvest goes on. Requests
follow the shared retry policy (`astrodata.core.http`: 408/409/429/5xx retried with jittered backoff
honouring Retry-After, other 4xx and 501 final); a request the service refuses, or that still fails
when the retries run out, or an OAI-PMH error, stops the harvest with a `HarvestError` naming the
URL and reason.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import arxiv
import httpx
import pyarrow as pa

from astrodata.core.arxiv_ids import split_id
from astrodata.core.http import RetryPolicy, is_retryable, retry_after, user_agent_for
from astrodata.core.workspace import Run, Workspace

API_URL = "https://export.arxiv.org/api/query"
OAI_URL = "https://oaipmh.arxiv.org/oai"
DEFAULT_CATEGORIES = ("astro-ph", "gr-qc")
METADATA_PREFIXES = ("arXivRaw", "arXiv")
STAGE = "harvest"
BATCH = 1000
OAI_BACKOFF_S = 5.0  # the first OAI-PMH retry waits up to this long (the wait before the shared policy)
API_RETRY_CAP_S = 120.0

# The API has no archive wildcard we can rely on, so an archive is spelled out as its categories.
API_CATEGORIES = {
    "astro-ph": ("astro-ph", "astro-ph.CO", "astro-ph.EP", "astro-ph.GA", "astro-ph.HE", "astro-ph.IM",
                 "astro-ph.SR"),
}
# OAI-PMH sets are per archive; these archives live under the physics group ("physics:astro-ph").
PHYSICS_ARCHIVES = {"astro-ph", "cond-mat", "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math-ph",
                    "nlin", "nucl-ex", "nucl-th", "physics", "quant-ph"}

OAI_NS = "{http://www.openarchives.org/OAI/2.0/}"
ARXIV_NS = "{http://arxiv.org/OAI/arXiv/}"
RAW_NS = "{http://arxiv.org/OAI/arXivRaw/}"
ATOM_NS = "{http://www.w3.org/2005/Atom}"



class HarvestError(RuntimeError):
    """A request the service refused or could not serve; the message names the URL and the reason."""


# -- the record ------------------------------------------------------------------------------------
@dataclass
class Paper:
    """One paper as stored in `papers`; `versions` lists the versions whose dates the source gave."""

    arxiv_id: str
    latest_version: int | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    abstract: str | None = None
    categories: list[str] = field(default_factory=list)
    primary_category: str | None = None
    doi: str | None = None
    journal_ref: str | None = None
    license: str | None = None
    comments: str | None = None
    published: date | None = None
    updated: date | None = None
    harvested_from: str = ""


COLUMNS = tuple(f.name for f in fields(Paper))
ARROW_SCHEMA = pa.schema([
    ("arxiv_id", pa.string()), ("latest_version", pa.int32()), ("versions", pa.string()),
    ("title", pa.string()), ("authors", pa.list_(pa.string())), ("abstract", pa.string()),
    ("categories", pa.list_(pa.string())), ("primary_category", pa.string()), ("doi", pa.string()),
    ("journal_ref", pa.string()), ("license", pa.string()), ("comments", pa.string()),
    ("published", pa.date32()), ("updated", pa.date32()), ("harvested_from", pa.string()),
    ("harvested_at", pa.timestamp("us")),
])


def _one_line(text: str | None) -> str | None:
    """Collapse arXiv's hard-wrapped fields (titles are wrapped at ~80 columns) to one line."""
    collapsed = " ".join((text or "").split())
    return collapsed or None


def _abstract(text: str | None) -> str | None:
    """Unwrap an abstract; arXiv marks a new paragraph by a newline followed by indentation."""
    paragraphs = [_one_line(p) for p in re.split(r"\n[ \t]+", (text or "").strip())]
    return "\n".join(p for p in paragraphs if p) or None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc2822(text: str) -> datetime:
    """arXivRaw and the snapshot date versions as `Mon, 15 Apr 2013 19:33:21 GMT`."""
    return email.utils.parsedate_to_datetime(text.strip())


def split_authors(line: str) -> list[str]:
    """arXiv's free-text author line -> names.

    Written here because no library parses arXiv's convention: commas and a final `and` separate
    names, and parentheses hold affiliations that may themselves contain commas (dropped here).
    """
    kept, depth = [], 0
    for ch in line:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            kept.append(ch)
    flat = " ".join("".join(kept).split())
    return [name.strip() for name in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", flat) if name.strip()]


def _categories(line: str | None) -> list[str]:
    return (line or "").split()


def paper_from_api(result: arxiv.Result) -> Paper:
    """An Atom entry as parsed by the `arxiv` package (2016 and current formats alike)."""
    arxiv_id, ver = split_id(result.get_short_id())
    ver = ver or 1
    versions = [{"version": 1, "date": _iso(result.published)}]
    if ver > 1:
        versions.append({"version": ver, "date": _iso(result.updated)})
    return Paper(
        arxiv_id=arxiv_id, latest_version=ver, versions=versions, title=_one_line(result.title),
        authors=[a.name for a in result.authors], abstract=_abstract(result.summary),
        categories=list(result.categories), primary_category=result.primary_category or None,
        doi=result.doi or None, journal_ref=_one_line(result.journal_ref), comments=_one_line(result.comment),
        published=result.published.date(), updated=result.updated.date(), harvested_from="api",
    )


def _text(el: ET.Element, ns: str, tag: str) -> str | None:
    child = el.find(ns + tag)
    return child.text if child is not None else None


def paper_from_oai(record: ET.Element) -> Paper | None:
    """An OAI-PMH `<record>` in the arXiv or arXivRaw format; None for a deleted record."""
    header = record.find(OAI_NS + "header")
    if header is not None and header.get("status") == "deleted":
        return None
    metadata = record.find(OAI_NS + "metadata")
    if metadata is None or len(metadata) == 0:
        raise ValueError("record has no metadata")
    el = metadata[0]
    if el.tag == RAW_NS + "arXivRaw":
        return _from_arxiv_raw(el)
    if el.tag == ARXIV_NS + "arXiv":
        return _from_arxiv_format(el)
    raise ValueError(f"unsupported metadata format {el.tag}")


def _common(el: ET.Element, ns: str) -> dict[str, Any]:
    cats = _categories(_text(el, ns, "categories"))
    return {
        "title": _one_line(_text(el, ns, "title")), "abstract": _abstract(_text(el, ns, "abstract")),
        "categories": cats, "primary_category": cats[0] if cats else None,
        "doi": _one_line(_text(el, ns, "doi")), "journal_ref": _one_line(_text(el, ns, "journal-ref")),
        "license": _one_line(_text(el, ns, "license")), "comments": _one_line(_text(el, ns, "comments")),
    }


def _from_arxiv_raw(el: ET.Element) -> Paper:
    arxiv_id, _ = split_id(_text(el, RAW_NS, "id") or "")
    versions = []
    for v in el.iter(RAW_NS + "version"):
        entry = {"version": int((v.get("version") or "").lstrip("v")),
                 "date": _iso(_rfc2822(_text(v, RAW_NS, "date") or ""))}
        if size := _text(v, RAW_NS, "size"):
            entry["size"] = size
        versions.append(entry)
    versions.sort(key=lambda v: v["version"])
    if not versions:
        raise ValueError("arXivRaw record without versions")
    return Paper(
        arxiv_id=arxiv_id, latest_version=versions[-1]["version"], versions=versions,
        authors=split_authors(_text(el, RAW_NS, "authors") or ""),
        published=date.fromisoformat(versions[0]["date"][:10]), updated=date.fromisoformat(versions[-1]["date"][:10]),
        harvested_from="oai-arXivRaw", **_common(el, RAW_NS),
    )


def _from_arxiv_format(el: ET.Element) -> Paper:
    """The arXiv format dates only the first (`created`) and latest (`updated`) versions, unnumbered."""
    arxiv_id, _ = split_id(_text(el, ARXIV_NS, "id") or "")
    created = date.fromisoformat((_text(el, ARXIV_NS, "created") or "").strip())
    updated = _text(el, ARXIV_NS, "updated")
    authors = []
    for a in el.iter(ARXIV_NS + "author"):
        parts = (_text(a, ARXIV_NS, "forenames"), _text(a, ARXIV_NS, "keyname"), _text(a, ARXIV_NS, "suffix"))
        authors.append(" ".join(" ".join(p.split()) for p in parts if p and p.strip()))
    return Paper(
        arxiv_id=arxiv_id, latest_version=None if updated else 1,
        versions=[{"version": 1, "date": created.isoformat()}], authors=authors, published=created,
        updated=date.fromisoformat(updated.strip()) if updated else created, harvested_from="oai-arXiv",
        **_common(el, ARXIV_NS),
    )


def paper_from_snapshot(obj: dict[str, Any]) -> Paper:
    """One line of the metadata snapshot (`versions` dated RFC 2822, `authors_parsed` split names)."""
    arxiv_id, _ = split_id(obj["id"])
    versions = sorted(({"version": int(v["version"].lstrip("v")), "date": _iso(_rfc2822(v["created"]))}
                       for v in obj.get("versions") or []), key=lambda v: v["version"])
    if obj.get("authors_parsed"):
        authors = [" ".join(p for p in (a[1], a[0], a[2] if len(a) > 2 else "") if p)
                   for a in obj["authors_parsed"]]
    else:
        authors = split_authors(obj.get("authors") or "")
    cats = _categories(obj.get("categories"))
    fallback = date.fromisoformat(obj["update_date"]) if obj.get("update_date") else None
    return Paper(
        arxiv_id=arxiv_id, latest_version=versions[-1]["version"] if versions else None, versions=versions,
        title=_one_line(obj.get("title")), authors=authors, abstract=_abstract(obj.get("abstract")),
        categories=cats, primary_category=cats[0] if cats else None, doi=_one_line(obj.get("doi")),
        journal_ref=_one_line(obj.get("journal-ref")), license=_one_line(obj.get("license")),
        comments=_one_line(obj.get("comments")),
        published=date.fromisoformat(versions[0]["date"][:10]) if versions else None,
        updated=date.fromisoformat(versions[-1]["date"][:10]) if versions else fallback,
        harvested_from="snapshot",
    )


# -- merging and storage -----------------------------------------------------------------------------
def _rank(p: Paper) -> tuple[date, int]:
    return (p.updated or p.published or date.min, p.latest_version or 0)


def _merge_versions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_number: dict[int, dict[str, Any]] = {}
    for v in [*old, *new]:
        cur = by_number.setdefault(v["version"], {})
        for key, value in v.items():
            # keep the more precise of two dates for the same version (a timestamp over a bare day)
            if value is not None and not (key == "date" and str(cur.get(key, "")).startswith(str(value))):
                cur[key] = value
    return [by_number[n] for n in sorted(by_number)]


def merge_papers(old: Paper | None, new: Paper) -> Paper:
    """The record with more (later) versions wins field by field; the other fills its gaps."""
    if old is None:
        return new
    win, lose = (new, old) if _rank(new) >= _rank(old) else (old, new)
    merged = {c: getattr(win, c) if getattr(win, c) not in (None, "", []) else getattr(lose, c) for c in COLUMNS}
    merged["versions"] = _merge_versions(old.versions, new.versions)
    known = [n for n in (old.latest_version, new.latest_version) if n]
    merged["latest_version"] = max(known) if known else None
    return Paper(**merged)


def _values(p: Paper) -> dict[str, Any]:
    """Column values (a shallow copy: `asdict` deep-copies and dominated snapshot harvests)."""
    return {c: getattr(p, c) for c in COLUMNS}


def _same(a: Paper, b: Paper) -> bool:
    return {**_values(a), "harvested_from": ""} == {**_values(b), "harvested_from": ""}


def _read_papers(ws: Workspace, ids: list[str]) -> dict[str, Paper]:
    rows = ws.con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM papers WHERE arxiv_id IN (SELECT unnest(?::VARCHAR[]))", [ids]
    ).fetchall()
    papers = {}
    for row in rows:
        values = dict(zip(COLUMNS, row, strict=True))
        values["versions"] = json.loads(values["versions"] or "[]")
        values["authors"] = values["authors"] or []
        values["categories"] = values["categories"] or []
        papers[values["arxiv_id"]] = Paper(**values)
    return papers


def upsert_papers(ws: Workspace, papers: Iterable[Paper]) -> dict[str, int]:
    """Merge papers into `papers`; returns counts of inserted, updated and unchanged rows."""
    incoming: dict[str, Paper] = {}
    for p in papers:
        incoming[p.arxiv_id] = merge_papers(incoming.get(p.arxiv_id), p)
    existing = _read_papers(ws, list(incoming))
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    rows = []
    for arxiv_id, paper in incoming.items():
        old = existing.get(arxiv_id)
        merged = merge_papers(old, paper)
        if old is not None and _same(old, merged):
            counts["unchanged"] += 1
            continue
        counts["inserted" if old is None else "updated"] += 1
        rows.append({**_values(merged), "versions": json.dumps(merged.versions),
                     "harvested_at": datetime.now(UTC).replace(tzinfo=None)})
    if rows:
        ws.con.register("_incoming_papers", pa.Table.from_pylist(rows, schema=ARROW_SCHEMA))
        try:
            cols = ", ".join(ARROW_SCHEMA.names)
            select = cols.replace("versions", "versions::JSON")
            ws.con.execute(f"INSERT OR REPLACE INTO papers ({cols}) SELECT {select} FROM _incoming_papers")
        finally:
            ws.con.unregister("_incoming_papers")
    return counts


def paper_metadata(ws: Workspace, arxiv_id: str) -> dict[str, Any] | None:
    """Catalog metadata for an e-print id (any version, URL or file-stem form); None when unknown.

    `version`, `url` and `date` refer to the asked version when the id carries one, else the latest.
    """
    try:
        base, ver = split_id(arxiv_id)
    except ValueError:
        return None
    paper = _read_papers(ws, [base]).get(base)
    if paper is None:
        return None
    meta = _values(paper)
    meta["published"] = paper.published.isoformat() if paper.published else None
    meta["updated"] = paper.updated.isoformat() if paper.updated else None
    meta["version"] = ver or paper.latest_version
    meta["url"] = f"https://arxiv.org/abs/{base}" + (f"v{ver}" if ver else "")
    dated = {v["version"]: v.get("date") for v in paper.versions}
    meta["date"] = (dated.get(meta["version"]) or meta["updated"] or meta["published"] or "")[:10] or None
    return meta


# arXiv's licence for papers whose record names none: the perpetual non-exclusive licence to distribute, the
# minimum every submitter grants (https://info.arxiv.org/help/license/index.html).
ARXIV_DEFAULT_LICENSE = "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"


def _month_from_id(base: str) -> str:
    """`2401.01234` -> `2024-01`; `astro-ph/9912345` -> `1999-12` (arXiv ids start with the submission month)."""
    yymm = base[:4] if "/" not in base else base.split("/", 1)[1][:4]
    year = int(yymm[:2])
    return f"{(1900 if year >= 91 else 2000) + year}-{yymm[2:]}"


def row_license_url_date(eprint_id: str, meta: dict[str, Any] | None) -> dict[str, str]:
    """`license`, `url` and `date` of a corpus row for an e-print.

    license: the record's licence URL; arXiv's default licence when the record comes from OAI-PMH or the snapshot
    (formats that carry the field) and names none; `unknown` when the paper was never harvested or only through
    the API, whose Atom entries carry no licence at all. url: the abs page of the version. date: the version's date
    from the record, else the submission month encoded in the id (`YYYY-MM`). Ids that are not arXiv ids get
    `unknown` and empty url/date."""
    try:
        base, ver = split_id(eprint_id)
    except ValueError:
        return {"license": "unknown", "url": "", "date": ""}
    meta = meta or {}
    license = meta.get("license")
    if not license and meta.get("harvested_from") not in (None, "api"):
        license = ARXIV_DEFAULT_LICENSE
    return {"license": license or "unknown",
            "url": meta.get("url") or f"https://arxiv.org/abs/{base}" + (f"v{ver}" if ver else ""),
            "date": meta.get("date") or _month_from_id(base)}


# -- the harvest driver ------------------------------------------------------------------------------
@dataclass
class HarvestStats:
    """What a harvest did; also stored as the run's counts."""

    method: str
    run_id: str = ""
    requests: int = 0
    seen: int = 0
    filtered_out: int = 0
    deleted: int = 0
    errors: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


Progress = Callable[[HarvestStats], None]


def category_matches(categories: Sequence[str], wanted: Sequence[str]) -> bool:
    """`astro-ph` matches `astro-ph` and `astro-ph.*`; an empty `wanted` matches everything."""
    return not wanted or any(c == w or c.startswith(w + ".") for c in categories for w in wanted)


def _as_date(value: date | str | None, name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date like 2024-01-31, got {value!r}") from None


def _drive(
    ws: Workspace, stats: HarvestStats, config: dict[str, Any],
    items: Callable[[HarvestStats], Iterator[tuple[str, Any]]], parse: Callable[[Any], Paper | None],
    keep: Callable[[Paper], bool], prefilter: Callable[[Any], bool] | None = None,
    progress: Progress | None = None,
) -> HarvestStats:
    """Parse, filter and upsert in batches; a bad record is an error row, a refused request ends the run."""
    with ws.run(STAGE, config) as run:
        stats.run_id = run.run_id
        batch: list[Paper] = []

        def flush() -> None:
            for key, n in upsert_papers(ws, batch).items():
                setattr(stats, key, getattr(stats, key) + n)
            batch.clear()
            run.counts.update(asdict(stats))
            if progress:
                progress(stats)

        try:
            for hint, raw in items(stats):
                stats.seen += 1
                if prefilter is not None and not prefilter(raw):
                    stats.filtered_out += 1
                    continue
                paper = _parse_one(run, stats, hint, raw, parse)
                if paper is None:
                    continue
                if not keep(paper):
                    stats.filtered_out += 1
                    continue
                batch.append(paper)
                if len(batch) >= BATCH:
                    flush()
                elif progress:
                    progress(stats)
        except HarvestError as exc:
            run.error(None, STAGE, "request failed", str(exc))
            raise
        finally:
            flush()
    return stats


def _parse_one(run: Run, stats: HarvestStats, hint: str, raw: Any, parse: Callable[[Any], Paper | None]) -> Paper | None:
    try:
        paper = parse(raw)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        stats.errors += 1
        run.error(hint, STAGE, "unparseable record", f"{type(exc).__name__}: {exc}")
        return None
    if paper is None:
        stats.deleted += 1
    return paper


def _date_filter(categories: Sequence[str], date_from: date | None, date_to: date | None) -> Callable[[Paper], bool]:
    def keep(p: Paper) -> bool:
        when = p.published or p.updated
        in_range = when is None or ((date_from is None or when >= date_from) and (date_to is None or when <= date_to))
        return in_range and category_matches(p.categories, categories)

    return keep


# -- (a) the arXiv API -------------------------------------------------------------------------------
def api_query(categories: Sequence[str], date_from: date | None, date_to: date | None) -> str:
    """The API's search_query: any of the categories, first version submitted within the dates."""
    cats = [c for name in categories for c in API_CATEGORIES.get(name, (name,))]
    parts = ["(" + " OR ".join(f"cat:{c}" for c in cats) + ")"] if cats else []
    if date_from or date_to:
        lo = (date_from or date(1991, 1, 1)).strftime("%Y%m%d") + "0000"
        hi = (date_to or date.today()).strftime("%Y%m%d") + "2359"
        parts.append(f"submittedDate:[{lo} TO {hi}]")
    return " AND ".join(parts)


def api_client(base_url: str | None = None, page_size: int = 100, delay_seconds: float = 3.0,
               num_retries: int = 3) -> arxiv.Client:
    """An `arxiv.Client`; `base_url` replaces the package's endpoint (its `query_url_format`)."""
    client = arxiv.Client(page_size=page_size, delay_seconds=delay_seconds, num_retries=num_retries)
    client.query_url_format = f"{base_url or API_URL}?{{}}"
    return client


def _atom_error(content: bytes) -> str | None:
    """The reason arXiv gives in an error feed's entry summary (e.g. `incorrect id format for abc`)."""
    try:
        summary = ET.fromstring(content).find(f"{ATOM_NS}entry/{ATOM_NS}summary")
    except ET.ParseError:
        return None
    return _one_line(summary.text) if summary is not None else None


def harvest_api(
    ws: Workspace, categories: Sequence[str] = DEFAULT_CATEGORIES, date_from: date | str | None = None,
    date_to: date | str | None = None, *, ids: Sequence[str] | None = None, base_url: str | None = None,
    page_size: int = 100, delay_seconds: float = 3.0, num_retries: int = 3, progress: Progress | None = None,
) -> HarvestStats:
    """Harvest through the arXiv API; with `ids`, fetch exactly those papers (no category/date filter)."""
    date_from, date_to = _as_date(date_from, "date_from"), _as_date(date_to, "date_to")
    client = api_client(base_url, page_size, delay_seconds, num_retries)
    if ids:  # asked-for ids are kept as they are
        search = arxiv.Search(id_list=list(ids), max_results=None)
        keep = _date_filter((), None, None)
    elif not categories:
        raise ValueError("the arXiv API needs categories or ids (it has no 'everything' query)")
    else:
        search = arxiv.Search(query=api_query(categories, date_from, date_to), max_results=None,
                              sort_by=arxiv.SortCriterion.SubmittedDate, sort_order=arxiv.SortOrder.Ascending)
        keep = _date_filter(categories, date_from, date_to)
    config = {"method": "api", "categories": list(categories), "date_from": date_from, "date_to": date_to,
              "ids": list(ids or []), "base_url": base_url or API_URL, "page_size": page_size,
              "delay_seconds": delay_seconds, "num_retries": num_retries}
    stats = HarvestStats("api")

    # The package retries any failed page at once (after its politeness delay); this requests
    # response hook puts the shared policy in front: final statuses skip the package's retries,
    # retryable ones wait the policy's backoff (at least the Retry-After) before the next try.
    policy = RetryPolicy(num_retries, base_s=delay_seconds, cap_s=API_RETRY_CAP_S)
    failures = [0]  # consecutive retryable answers

    def count_and_refuse(resp: Any, *args: Any, **kwargs: Any) -> None:
        stats.requests += 1
        if resp.status_code < 400:
            failures[0] = 0
            return
        if not is_retryable(resp.status_code):
            reason = _atom_error(resp.content) or resp.reason
            raise HarvestError(f"arXiv API refused the request with HTTP {resp.status_code}: {reason} ({resp.url})")
        failures[0] += 1
        if failures[0] <= num_retries:
            time.sleep(policy.delay(failures[0], retry_after(resp.headers)))

    client._session.hooks["response"].append(count_and_refuse)  # the package exposes no session option

    def items(_: HarvestStats) -> Iterator[tuple[str, arxiv.Result]]:
        try:
            for result in client.results(search):
                yield result.entry_id, result
        except arxiv.ArxivError as exc:
            raise HarvestError(f"arXiv API failed after {num_retries} retries: {exc}") from None
        except OSError as exc:  # requests' exceptions are OSErrors
            raise HarvestError(f"arXiv API unreachable: {exc}") from None

    return _drive(ws, stats, config, items, paper_from_api, keep, progress=progress)


# -- (b) OAI-PMH -------------------------------------------------------------------------------------
def oai_sets(categories: Sequence[str]) -> list[str | None]:
    """OAI-PMH sets covering the categories (one per archive); [None] (no set) for all of arXiv."""
    sets: list[str | None] = []
    for name in categories:
        archive = name.split(".")[0]
        spec = f"physics:{archive}" if archive in PHYSICS_ARCHIVES else archive
        if spec not in sets:
            sets.append(spec)
    return sets or [None]


def _oai_request(http: httpx.Client, url: str, params: dict[str, str], policy: RetryPolicy,
                 stats: HarvestStats) -> ET.Element:
    """One OAI-PMH page; retryable statuses and network errors are retried by `policy`."""

    def get() -> httpx.Response:
        resp = http.get(url, params=params)
        stats.requests += 1
        return resp

    try:
        resp = policy.call(get)
    except httpx.TransportError as exc:
        raise HarvestError(f"OAI-PMH server still failing after {policy.max_retries} retries "
                           f"({type(exc).__name__}: {exc}): {url} {params}") from None
    if resp.status_code == 200:
        return _oai_page(resp.content, str(resp.url))
    if is_retryable(resp.status_code):
        raise HarvestError(f"OAI-PMH server still failing after {policy.max_retries} retries "
                           f"(HTTP {resp.status_code}): {url} {params}")
    raise HarvestError(f"OAI-PMH server refused {resp.url} with HTTP {resp.status_code}: "
                       f"{_one_line(resp.text[:300]) or resp.reason_phrase}")


def _oai_page(content: bytes, url: str) -> ET.Element:
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise HarvestError(f"OAI-PMH response from {url} is not well-formed XML: {exc}") from None
    error = root.find(OAI_NS + "error")
    if error is not None and error.get("code") != "noRecordsMatch":
        raise HarvestError(f"OAI-PMH error {error.get('code')} from {url}: {_one_line(error.text)}")
    return root


def _oai_records(http: httpx.Client, url: str, params: dict[str, str], policy: RetryPolicy, delay_seconds: float,
                 stats: HarvestStats) -> Iterator[tuple[str, ET.Element]]:
    """Every record of a ListRecords answer, following resumption tokens page by page."""
    while True:
        root = _oai_request(http, url, params, policy, stats)
        for record in root.iter(OAI_NS + "record"):
            ident = record.find(f"{OAI_NS}header/{OAI_NS}identifier")
            yield (ident.text or "").strip() if ident is not None else "", record
        token = root.find(f"{OAI_NS}ListRecords/{OAI_NS}resumptionToken")
        if token is None or not (token.text or "").strip():
            return
        params = {"verb": "ListRecords", "resumptionToken": token.text.strip()}
        time.sleep(delay_seconds)


def harvest_oai(
    ws: Workspace, categories: Sequence[str] = DEFAULT_CATEGORIES, date_from: date | str | None = None,
    date_to: date | str | None = None, *, metadata_prefix: str = "arXivRaw", base_url: str | None = None,
    delay_seconds: float = 3.0, max_retries: int = 5, max_retry_wait: float = 120.0,
    progress: Progress | None = None,
) -> HarvestStats:
    """Harvest OAI-PMH ListRecords per archive set; dates are OAI datestamps (from/until)."""
    if metadata_prefix not in METADATA_PREFIXES:
        raise ValueError(f"metadata_prefix must be one of {METADATA_PREFIXES}, got {metadata_prefix!r}")
    date_from, date_to = _as_date(date_from, "date_from"), _as_date(date_to, "date_to")
    url = base_url or OAI_URL
    # A 503 without Retry-After waits up to 5, 10, 20... s (jittered), never more than max_retry_wait.
    policy = RetryPolicy(max_retries, base_s=OAI_BACKOFF_S, cap_s=max_retry_wait)
    config = {"method": "oai", "categories": list(categories), "date_from": date_from, "date_to": date_to,
              "metadata_prefix": metadata_prefix, "base_url": url}

    def items(stats: HarvestStats) -> Iterator[tuple[str, ET.Element]]:
        headers = {"User-Agent": user_agent_for("arXiv metadata harvester")}
        with httpx.Client(headers=headers, timeout=120, follow_redirects=True) as http:
            for n, spec in enumerate(oai_sets(categories)):
                if n:
                    time.sleep(delay_seconds)
                params = {"verb": "ListRecords", "metadataPrefix": metadata_prefix}
                params.update({k: v for k, v in (("set", spec), ("from", date_from and date_from.isoformat()),
                                                 ("until", date_to and date_to.isoformat())) if v})
                yield from _oai_records(http, url, params, policy, delay_seconds, stats)

    keep = _date_filter(categories, None, None)
    return _drive(ws, HarvestStats("oai"), config, items, paper_from_oai, keep, progress=progress)


# -- (c) the metadata snapshot -----------------------------------------------------------------------
@contextmanager
def open_snapshot(path: Path) -> Iterator[IO[bytes]]:
    """The snapshot as a binary line stream, from .json(l), .gz or a .zip holding one .json file."""
    if not path.is_file():
        raise HarvestError(f"snapshot not found: {path}")
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            yield fh
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.endswith((".json", ".jsonl"))]
            if len(members) != 1:
                raise HarvestError(f"{path}: expected one .json member in the zip, found {members}")
            with zf.open(members[0]) as fh:
                yield fh
    else:
        with path.open("rb") as fh:
            yield fh


def harvest_snapshot(
    ws: Workspace, path: str | Path, categories: Sequence[str] = DEFAULT_CATEGORIES,
    date_from: date | str | None = None, date_to: date | str | None = None, *, progress: Progress | None = None,
) -> HarvestStats:
    """Stream the snapshot; a line that cannot be a match (no category name in it) is not even parsed."""
    path = Path(path)
    date_from, date_to = _as_date(date_from, "date_from"), _as_date(date_to, "date_to")
    config = {"method": "snapshot", "path": str(path), "categories": list(categories), "date_from": date_from,
              "date_to": date_to}
    needles = [c.encode() for c in categories]

    def items(_: HarvestStats) -> Iterator[tuple[str, bytes]]:
        with open_snapshot(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    yield f"{path.name}:{lineno}", line

    def prefilter(line: bytes) -> bool:
        return not needles or any(n in line for n in needles)

    return _drive(ws, HarvestStats("snapshot"), config, items, lambda line: paper_from_snapshot(json.loads(line)),
                  _date_filter(categories, date_from, date_to), prefilter=prefilter, progress=progress)


# -- dispatch ----------------------------------------------------------------------------------------
METHODS = ("api", "oai", "snapshot")


def harvest(
    ws: Workspace, method: str, categories: Sequence[str] = DEFAULT_CATEGORIES,
    date_from: date | str | None = None, date_to: date | str | None = None, *, snapshot: str | Path | None = None,
    base_url: str | None = None, metadata_prefix: str = "arXivRaw", ids: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> HarvestStats:
    """Run one harvest method with the options that apply to it (the CLI's entry)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if (snapshot is not None) != (method == "snapshot"):
        raise ValueError("a snapshot path goes with --method snapshot, and only with it")
    if ids and method != "api":
        raise ValueError("ids are fetched through --method api only")
    if method == "api":
        return harvest_api(ws, categories, date_from, date_to, ids=ids, base_url=base_url, progress=progress)
    if method == "oai":
        return harvest_oai(ws, categories, date_from, date_to, metadata_prefix=metadata_prefix,
                           base_url=base_url, progress=progress)
    return harvest_snapshot(ws, snapshot, categories, date_from, date_to, progress=progress)
