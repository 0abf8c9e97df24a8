"""Astronomy Wikipedia: read pages, select the astronomy ones, turn wikitext into clean text.

Inputs, both streamed so memory stays bounded on a full dump:
- a MediaWiki XML dump (`pages-articles*.xml[.bz2]`): iterparse over the bz2 stream, each page
  element cleared once read; redirects and non-article namespaces are skipped and reported;
- the `wikimedia/wikipedia` Parquet dataset (Hub id or local file/folder, columns
  id,url,title,text) through `datasets`, already plain text and without categories.

Selection (settings in the recipe's `wikipedia:` section), every page gets a `Decision` with
its reason:
- category graph: a page is astronomy when one of its categories lies within `category_depth`
  subcategory hops below a root (BFS). Subcategory edges come from the dump's own `Category:`
  pages and/or a categorylinks file; category names matching `category_patterns` count too,
  which is what remains when a dump carries no hierarchy (a cut-down dump, or Parquet);
- lexicon: weighted astronomy-term hits per 1,000 words above a threshold, with a minimum of
  distinct terms;
- `selection: either` keeps a page that either signal accepts (Parquet rows have no category
  links, so there the lexicon decides alone).

Wikitext -> text uses mwparserfromhell's parse tree; the rendering over that tree is ours
because `strip_code` keeps the contents of tables and references and flattens headings, and
we want those dropped and the headings kept as Markdown. Templates that carry facts (`val`,
`convert`, `formatnum`, units, dates, ...) render through `wiki_templates.py` (why a table of
handlers and not an expander: see there); an unknown template is counted per page in
`WikiPage.losses` as ("template", name) and reaches the catalog's `losses` table.
"""

from __future__ import annotations

import bz2
import csv
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote
from xml.etree import ElementTree as ET

import mwparserfromhell as mwp
from mwparserfromhell.nodes import (
    Comment,
    ExternalLink,
    Heading,
    HTMLEntity,
    Tag,
    Template,
    Text,
    Wikilink,
)
from pydantic import field_validator

from astrodata.core.config import Strict
from astrodata.sources.wiki_templates import render_template


class LexiconSettings(Strict):
    """Keyword scorer: weighted term hits per 1,000 words (`astronom*` = prefix match)."""

    terms: dict[str, float]
    threshold: float  # weighted hits per 1,000 words
    min_distinct: int  # distinct terms seen, so one repeated word cannot carry a page
    # Parse only pages whose score on the raw wikitext reaches this share of the threshold:
    # the wikitext parse costs ~100x the scoring, and clean/raw scores stay within ~2x.
    raw_prefilter: float


class WikipediaSettings(Strict):
    """Which Wikipedia pages count as astronomy, and how their wikitext becomes text."""

    # either: category graph OR lexicon; category / lexicon: that signal alone
    selection: Literal["either", "category", "lexicon"]
    category_roots: list[str]
    category_depth: int  # subcategory hops below the roots
    # Category names that count as astronomy on their own (case-insensitive regexes): the
    # fallback when the dump carries no category hierarchy (no Category: pages, no links file).
    category_patterns: list[str]
    lexicon: LexiconSettings
    drop_sections: list[str]  # headings whose sections are dropped
    namespaces: list[int]
    dataset_config: str  # config of the `wikimedia/wikipedia` Hub dataset

    @field_validator("category_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        """Checked when the recipe is read, not when the first dump page reaches the selector."""
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return patterns



SOURCE = "wikipedia"
# Wikipedia's text licence changed from CC BY-SA 3.0 to 4.0 on 2023-06-29 (terms of use update).
LICENSE_SWITCH = date(2023, 6, 29)
CATEGORY_NS = 14

# Tags whose whole content is not prose.
DROP_TAGS = {"ref", "references", "table", "gallery", "timeline", "imagemap", "score", "graph",
             "mapframe", "maplink", "templatedata", "includeonly", "syntaxhighlight", "source",
             "inputbox", "categorytree", "hiero", "poem"}
NON_TEXT_LINK_NAMESPACES = {"file", "image", "media", "category"}
LINK_PREFIX = re.compile(r"^:?([a-z][a-z-]*):", re.IGNORECASE)
CATEGORY_LINK = re.compile(r"\[\[\s*[Cc]ategory\s*:\s*([^\]|\n]+)")
DISAMBIGUATION = re.compile(r"\{\{\s*(?:disambig\w*|dab|hndis|geodis|set index article|sia)\s*[|}]",
                            re.IGNORECASE)
WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]+)*$")
MAGIC_WORD = re.compile(r"__[A-Z]+__")
MATH_SPAN = re.compile(r"(\$[^$\n]*\$)")
SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:!?])(?=\s|$)")
EMPTY_PARENS = re.compile(r"\(\s*[,;:]?\s*\)")
TABLE_LINE = re.compile(r"^\s*(\{\||\|\}|\|-|\|\+|!|\|).*$", re.MULTILINE)


@dataclass
class WikiPage:
    """One page as read from a dump or a Parquet row (`wikitext` False: `text` is plain already)."""

    page_id: str
    title: str
    text: str
    ns: int = 0
    redirect: str | None = None
    timestamp: str | None = None
    url: str | None = None
    wikitext: bool = True
    categories: list[str] = field(default_factory=list)
    losses: Counter[tuple[str, str]] = field(default_factory=Counter)  # filled by clean_page_text


@dataclass
class Decision:
    """Why a page was kept or not: `action` is kept | dropped | redirect | skipped."""

    page_id: str
    title: str
    action: str
    reason: str
    score: float | None = None


# -- reading ---------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _open(path: Path):
    return bz2.open(path, "rb") if path.suffix == ".bz2" else open(path, "rb")


def iter_xml_pages(path: str | Path) -> Iterator[WikiPage]:
    """Stream every page of a MediaWiki XML dump; memory stays bounded by one page."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Wikipedia dump not found: {path}")
    base = "https://en.wikipedia.org/wiki/"
    with _open(path) as fh:
        context = ET.iterparse(fh, events=("start", "end"))
        _, root = next(context)
        for event, elem in context:
            if event != "end":
                continue
            if _local(elem.tag) == "base" and elem.text:  # siteinfo: the wiki's own article URL prefix
                base = elem.text.rsplit("/", 1)[0] + "/"
            if _local(elem.tag) != "page":
                continue
            fields: dict[str, Any] = {"redirect": None, "text": "", "timestamp": None, "ns": 0}
            for child in elem.iter():
                name = _local(child.tag)
                if name == "title":
                    fields["title"] = child.text or ""
                elif name == "ns":
                    fields["ns"] = int(child.text or 0)
                elif name == "id" and "page_id" not in fields:
                    fields["page_id"] = child.text or ""  # the first <id> is the page's
                elif name == "redirect":
                    fields["redirect"] = child.get("title") or ""
                elif name == "timestamp":
                    fields["timestamp"] = child.text
                elif name == "text":
                    fields["text"] = child.text or ""
            root.clear()  # drop this page (and any earlier siblings) from the tree
            yield WikiPage(**fields, url=page_url(fields.get("title", ""), base))


def iter_parquet_pages(source: str | Path, config: str = "20231101.en") -> Iterator[WikiPage]:
    """Rows of the `wikimedia/wikipedia` dataset: a local Parquet file/folder or a Hub id."""
    from datasets import load_dataset

    path = Path(source)
    if path.exists():
        files = [str(p) for p in sorted(path.rglob("*.parquet"))] if path.is_dir() else [str(path)]
        if not files:
            raise FileNotFoundError(f"no .parquet files under {path}")
        rows = load_dataset("parquet", data_files=files, split="train", streaming=True)
        snapshot = None
    else:
        rows = load_dataset(str(source), config, split="train", streaming=True)
        snapshot = config.split(".")[0]
    stamp = f"{snapshot[:4]}-{snapshot[4:6]}-{snapshot[6:8]}" if snapshot and snapshot.isdigit() else None
    for i, row in enumerate(rows):
        missing = {"id", "title", "text"} - set(row)
        if missing:
            raise ValueError(f"{source}: row {i} lacks column(s) {sorted(missing)} (want id,url,title,text)")
        yield WikiPage(page_id=str(row["id"]), title=row["title"], text=row["text"] or "",
                       url=row.get("url"), timestamp=stamp, wikitext=False)


def iter_pages(source: str | Path, config: str = "20231101.en") -> Iterator[WikiPage]:
    """XML dump (`.xml`, `.xml.bz2`, `.bz2`) or Parquet dataset, chosen by the path's name."""
    name = Path(source).name
    if name.endswith((".xml", ".xml.bz2", ".bz2")):
        return iter_xml_pages(source)
    return iter_parquet_pages(source, config)


# -- categories ------------------------------------------------------------------------------
def _norm_category(name: str) -> str:
    name = name.strip().replace("_", " ")
    if name.lower().startswith("category:"):
        name = name.split(":", 1)[1].strip()
    return name[:1].upper() + name[1:]


def page_categories(wikitext: str) -> list[str]:
    """Category names of `[[Category:Name|sort key]]` links, in order, without duplicates.

    A regex, not the parser: it runs on every page of a dump, and the parse costs ~100x more.
    Categories added by templates are invisible either way (templates are not expanded).
    """
    return list(dict.fromkeys(_norm_category(m) for m in CATEGORY_LINK.findall(wikitext)))


def is_disambiguation(page: WikiPage) -> bool:
    return page.title.endswith("(disambiguation)") or bool(DISAMBIGUATION.search(page.text))


class CategoryGraph:
    """Subcategory edges (child -> parents) and the set of categories under the roots."""

    def __init__(self) -> None:
        self.children: dict[str, set[str]] = {}
        self.n_edges = 0

    def add(self, child: str, parent: str) -> None:
        kids = self.children.setdefault(_norm_category(parent), set())
        before = len(kids)
        kids.add(_norm_category(child))
        self.n_edges += len(kids) - before

    def add_links_file(self, path: str | Path) -> None:
        """A categorylinks table as CSV/TSV with columns `page,category`; only rows whose page is
        a `Category:` title are subcategory edges (a page's own categories come from its text)."""
        path = Path(path)
        delimiter = "\t" if path.suffix in {".tsv", ".tab"} else ","
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            if not reader.fieldnames or not {"page", "category"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: a categorylinks file needs the columns page,category")
            for row in reader:
                if row["page"].lower().startswith("category:"):
                    self.add(row["page"], row["category"])

    def add_dump(self, path: str | Path) -> None:
        """A pass over an XML dump: subcategory edges from its `Category:` pages."""
        for page in iter_xml_pages(path):
            if page.ns == CATEGORY_NS:
                for parent in page_categories(page.text):
                    self.add(page.title, parent)

    def closure(self, roots: Iterable[str], depth: int) -> dict[str, tuple[str, int]]:
        """BFS: every category within `depth` hops below a root -> (root, hops)."""
        seen: dict[str, tuple[str, int]] = {}
        queue = deque()
        for root in roots:
            root = _norm_category(root)
            if root not in seen:
                seen[root] = (root, 0)
                queue.append(root)
        while queue:
            cat = queue.popleft()
            root, hops = seen[cat]
            if hops >= depth:
                continue
            for child in sorted(self.children.get(cat, ())):
                if child not in seen:
                    seen[child] = (root, hops + 1)
                    queue.append(child)
        return seen


# -- selection -------------------------------------------------------------------------------
class Lexicon:
    """Weighted astronomy-term scorer; a `*` suffix means "this word prefix".

    Single words are counted from a Counter of the text's words (each distinct word checked
    once), multi-word terms with one small regex: ~10x faster than one big alternation.
    """

    def __init__(self, settings: LexiconSettings):
        self.settings = settings
        self.exact: dict[str, str] = {}
        self.prefixes: dict[str, str] = {}
        phrases = []
        for term in settings.terms:
            stem = term.rstrip("*").lower()
            if " " in stem:
                phrases.append(term)
            elif term.endswith("*"):
                self.prefixes[stem] = term
            else:
                self.exact[stem] = term
        self.prefix_lengths = sorted({len(p) for p in self.prefixes})
        self.phrase_terms = phrases
        parts = []
        for term in phrases:
            words = r"\s+".join(re.escape(w) for w in term.rstrip("*").lower().split())
            parts.append(f"({words}[a-z]*)" if term.endswith("*") else f"({words})")
        self.phrase_pattern = re.compile(r"\b(?:" + "|".join(parts) + r")\b") if parts else None

    def score(self, text: str) -> tuple[float, dict[str, int]]:
        """(weighted hits per 1,000 words, hits per term)."""
        lower = text.lower()
        hits: dict[str, int] = {}
        for word, n in Counter(WORD.findall(lower)).items():
            term = self.exact.get(word)
            if term is None:
                term = next((self.prefixes[word[:k]] for k in self.prefix_lengths
                             if k <= len(word) and word[:k] in self.prefixes), None)
            if term is not None:
                hits[term] = hits.get(term, 0) + n
        if self.phrase_pattern is not None:
            for match in self.phrase_pattern.finditer(lower):
                term = self.phrase_terms[match.lastindex - 1]
                hits[term] = hits.get(term, 0) + 1
        words = max(1, len(text.split()))
        weighted = sum(self.settings.terms[t] * n for t, n in hits.items())
        return 1000.0 * weighted / words, hits

    def decide(self, text: str) -> tuple[bool, float, str]:
        value, hits = self.score(text)
        top = ", ".join(f"{t}x{n}" for t, n in sorted(hits.items(), key=lambda kv: -kv[1])[:5])
        ok = value >= self.settings.threshold and len(hits) >= self.settings.min_distinct
        verdict = ">=" if ok else "<"
        return ok, value, (f"lexicon {value:.1f} {verdict} {self.settings.threshold:g}/1k words, "
                           f"{len(hits)} distinct terms ({top or 'none'})")


class Selector:
    """Decides page by page; build it once per run (it compiles the lexicon and the BFS)."""

    def __init__(self, settings: WikipediaSettings, graph: CategoryGraph | None = None):
        self.settings = settings
        self.graph = graph or CategoryGraph()
        self.astro_categories = self.graph.closure(settings.category_roots, settings.category_depth)
        self.patterns = [re.compile(p, re.IGNORECASE) for p in settings.category_patterns]
        self.lexicon = Lexicon(settings.lexicon)

    def category_reason(self, categories: list[str]) -> str | None:
        for cat in categories:
            if cat in self.astro_categories:
                root, hops = self.astro_categories[cat]
                return f"category {cat!r} is {hops} hop(s) below {root!r}"
        for cat in categories:
            for pattern in self.patterns:
                if pattern.search(cat):
                    return f"category {cat!r} matches /{pattern.pattern}/"
        return None

    def decide(self, page: WikiPage) -> tuple[Decision, str | None]:
        """The decision and, for a kept page, its clean text (wikitext parsed only when needed)."""
        mode, lexicon = self.settings.selection, self.settings.lexicon
        cat_reason = self.category_reason(page.categories) if mode != "lexicon" else None
        kept = cat_reason is not None
        if kept or mode == "category":
            reason = cat_reason or f"no category under the roots ({len(page.categories)} categories)"
            text = clean_page_text(page, self.settings) if kept else None
            return Decision(page.page_id, page.title, "kept" if kept else "dropped", reason), text
        if page.wikitext:
            raw, _ = self.lexicon.score(page.text)
            if raw < lexicon.threshold * lexicon.raw_prefilter:
                return Decision(page.page_id, page.title, "dropped",
                                f"lexicon on raw wikitext {raw:.1f} < {lexicon.threshold * lexicon.raw_prefilter:g}"
                                f"/1k words (not parsed)", raw), None
        text = clean_page_text(page, self.settings)
        ok, value, reason = self.lexicon.decide(text)
        return Decision(page.page_id, page.title, "kept" if ok else "dropped", reason, value), text if ok else None


# -- wikitext -> text ------------------------------------------------------------------------
def _render(nodes: Iterable[Any], out: list[str], losses: Counter[tuple[str, str]] | None = None) -> None:
    for node in nodes:
        if isinstance(node, Text):
            out.append(str(node.value))
        elif isinstance(node, Template):
            out.append(_template_text(node, losses))
        elif isinstance(node, Comment):
            continue
        elif isinstance(node, HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, Wikilink):
            title = str(node.title).strip()
            prefix = LINK_PREFIX.match(title)
            if prefix and prefix.group(1).lower() in NON_TEXT_LINK_NAMESPACES:
                continue  # files, images, categories
            if prefix and node.text is None and INTERLANGUAGE.match(prefix.group(1)) and title[0] != ":":
                continue  # [[fr:Albédo]]
            if node.text is not None:
                _render(node.text.nodes, out, losses)
            else:
                out.append(title.lstrip(":").split("#")[0] or title)
        elif isinstance(node, ExternalLink):
            if node.title is not None:
                _render(node.title.nodes, out, losses)
        elif isinstance(node, Heading):
            inner: list[str] = []
            _render(node.title.nodes, inner, losses)
            out.append(f"\n\n{'#' * node.level} {''.join(inner).strip()}\n\n")
        elif isinstance(node, Tag):
            name = str(node.tag).strip().lower()
            if name in DROP_TAGS:
                continue
            if name == "math":
                out.append(f"${str(node.contents).strip()}$" if node.contents is not None else "")
            elif name == "br":
                out.append("\n")
            elif name == "li":
                if not (out and out[-1] == "- "):  # nested items (`***`) become one Markdown bullet
                    out.append("- ")
            elif node.contents is not None:
                _render(node.contents.nodes, out, losses)
        # Arguments ({{{1}}}) and anything else carry no article prose


def _template_text(node: Template, losses: Counter[tuple[str, str]] | None) -> str:
    """A template's text through `wiki_templates.render_template`; an unknown one is counted. The name is
    rendered too: a parser function's argument may itself be a template (`{{formatnum:{{val|123456}}}}`)."""
    rendered: list[str] = []
    _render(node.name.nodes, rendered, losses)
    name = "".join(rendered).strip()
    positional: list[str] = []
    named: dict[str, str] = {}
    for p in node.params:
        inner: list[str] = []
        _render(p.value.nodes, inner, losses)
        value = "".join(inner)
        if p.showkey:
            named[str(p.name).strip().lower()] = value.strip()
        else:
            positional.append(value)
    text = render_template(name, positional, named)
    if text is None:
        if losses is not None:
            losses["template", " ".join(name.replace("_", " ").split()).lower()[:80]] += 1
        return ""
    return text


def _drop_sections(code: Any, drop: set[str]) -> None:
    """Remove sections such as References or External links, with their subsections."""
    for section in code.get_sections(include_lead=False, flat=False):
        headings = section.filter_headings(recursive=False)
        if headings and headings[0].title.strip_code().strip().lower() in drop:
            try:
                code.remove(section)
            except ValueError:  # already removed with an enclosing section
                pass


def wikitext_to_text(wikitext: str, drop_sections: Iterable[str] = (),
                     losses: Counter[tuple[str, str]] | None = None) -> str:
    """Clean text: infoboxes, tables, references and files dropped; link text kept; templates
    that carry facts rendered, unknown ones counted into `losses` as ("template", name);
    section headings kept as Markdown (`## History`); math kept as `$...$`."""
    code = mwp.parse(wikitext)
    drop = {s.lower() for s in drop_sections}
    if drop:
        _drop_sections(code, drop)
    out: list[str] = []
    _render(code.nodes, out, losses)
    text = "".join(out)
    text = TABLE_LINE.sub("", text)  # tables the parser could not close
    text = MAGIC_WORD.sub("", text)
    text = EMPTY_PARENS.sub("", text)
    # space left before punctuation by a dropped template; math spans ($...$) are left alone
    text = "".join(part if part.startswith("$") else SPACE_BEFORE_PUNCT.sub(r"\1", part)
                   for part in MATH_SPAN.split(text))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line != "-"]  # list items whose only content was a template
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    # a heading left with no body (its only content was a table or a list of references)
    text = re.sub(r"(?m)^(#+ .*)\n\n(?=#+ |\Z)", "", text + "\n").strip()
    return text


def clean_page_text(page: WikiPage, settings: WikipediaSettings) -> str:
    """The page's text; what could not be rendered goes to `page.losses`."""
    if not page.wikitext:
        return page.text
    page.losses.clear()
    return wikitext_to_text(page.text, settings.drop_sections, page.losses)


# -- rows ------------------------------------------------------------------------------------
def wikipedia_license(day: str | None) -> str:
    """CC BY-SA 4.0 for text from 2023-06-29 on (or undated), CC BY-SA 3.0 before."""
    if day:
        try:
            if date.fromisoformat(day[:10]) < LICENSE_SWITCH:
                return "CC-BY-SA-3.0"
        except ValueError:
            pass
    return "CC-BY-SA-4.0"


def page_url(title: str, base: str = "https://en.wikipedia.org/wiki/") -> str:
    return base + quote(title.replace(" ", "_"), safe="()_,'-.:/")


def iter_wikipedia_documents(
    source: str | Path,
    settings: WikipediaSettings,
    on_decision: Callable[[Decision], None] | None = None,
    categorylinks: str | Path | None = None,
    select_ids: Callable[[str], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Corpus rows (contract columns) of the astronomy pages of a dump or Parquet dataset.

    Every page, kept or not, is reported to `on_decision` with its reason; redirects are
    reported with their target (`action="redirect"`). For an XML dump with category pages the
    category hierarchy is read in a first pass (a second stream over the file). `select_ids`
    (e.g. a `--shard K/N` test on the document id) skips other pages before any work on them.
    """
    report = on_decision or (lambda d: None)
    is_xml = Path(source).name.endswith((".xml", ".xml.bz2", ".bz2"))
    graph = CategoryGraph()
    if settings.selection != "lexicon":
        if categorylinks is not None:
            graph.add_links_file(categorylinks)
        if is_xml:
            graph.add_dump(source)
    selector = Selector(settings, graph)
    namespaces = set(settings.namespaces)
    for page in iter_pages(source, settings.dataset_config):
        if select_ids is not None and not select_ids(f"{SOURCE}:{page.page_id}"):
            continue
        if page.redirect is not None:
            report(Decision(page.page_id, page.title, "redirect", f"redirect to {page.redirect!r}"))
            continue
        if page.ns not in namespaces:
            report(Decision(page.page_id, page.title, "skipped", f"namespace {page.ns}"))
            continue
        if page.wikitext:
            if is_disambiguation(page):
                report(Decision(page.page_id, page.title, "skipped", "disambiguation page"))
                continue
            page.categories = page_categories(page.text)
        decision, text = selector.decide(page)
        report(decision)
        if text is None:
            continue
        day = page.timestamp[:10] if page.timestamp else None
        yield {
            "id": f"{SOURCE}:{page.page_id}",
            "source": SOURCE,
            "source_id": page.page_id,
            "title": page.title,
            "text": text,
            "n_tokens": None,
            "license": wikipedia_license(day),
            "url": page.url or "",
            "date": day or "",
            "losses": [[kind, name, n] for (kind, name), n in page.losses.items()],
        }
