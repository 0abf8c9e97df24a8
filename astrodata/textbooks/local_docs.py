"""Local documents (`--docs DIR`): textbooks, lecture notes and the like, as corpus rows.

One document per file (.txt, .md, .tex, .pdf), split into one row per chapter when chapters can
be found, because a whole textbook is too long a document for training and for the filters.
Chapter headings are `Chapter N` / `CHAPTER IV` lines (text and PDF), level-1 `# ` headings
(Markdown) and `\\chapter` (LaTeX). Running headers ("Chapter 3" atop every page of a PDF) and
tables of contents are not splits: a heading repeating the open chapter's number is ignored,
and a "chapter" shorter than `min_chapter_words` joins the text before it.

.tex goes through the LaTeX stage (`astrodata.latex.to_text`), each chapter with the document's
preamble so its macros expand; .pdf through pypdf's text extraction, with each line-end hyphen
decided from evidence (`join_line_end_hyphens`). Every row carries the
licence the user gave: there is no default, since we cannot know a book's terms.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from astrodata.core.config import Strict


class LocalDocsSettings(Strict):
    source: str
    min_chapter_words: int  # shorter "chapters" (a table of contents, a title page) join the next



SUFFIXES = {".txt", ".md", ".tex", ".pdf"}
NUMBERED_CHAPTER = re.compile(
    r"(?im)^[ \t]*chapter[ \t]+(?P<key>\d+|[ivxlc]+|one|two|three|four|five|six|seven|eight|nine|ten)\b.*$")
MARKDOWN_CHAPTER = re.compile(r"(?m)^# +(?P<key>\S.*?)[ \t#]*$")
LATEX_CHAPTER = re.compile(r"\\chapter\*?\s*(?:\[[^\]]*\])?\s*\{(?P<key>[^{}]*)\}")
BEGIN_DOCUMENT = re.compile(r"\\begin\s*\{document\}")
HYPHEN_BREAK = re.compile(r"([A-Za-z]+)-\n[ \t]*([A-Za-z]+)")
HYPHENATED = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)+|[A-Za-z]+")


class DocumentError(Exception):
    """A file that cannot become text (unreadable PDF, no text layer, LaTeX refused)."""


def chapter_starts(text: str, pattern: re.Pattern[str], min_words: int) -> list[re.Match[str]]:
    """Heading matches where a chapter starts (see the module docstring for the rules)."""
    candidates = list(pattern.finditer(text))
    starts: list[re.Match[str]] = []
    current = None
    for k, match in enumerate(candidates):
        end = candidates[k + 1].start() if k + 1 < len(candidates) else len(text)
        key = match.group("key").strip().lower()
        if key == current or len(text[match.start():end].split()) < min_words:
            continue
        starts.append(match)
        current = key
    return starts


def split_chapters(text: str, pattern: re.Pattern[str], min_words: int) -> list[tuple[str | None, str]]:
    """[(heading or None for the front matter, text)]; one part without a heading when none is found.

    Front matter shorter than `min_words` (a title page) joins the first chapter.
    """
    starts = chapter_starts(text, pattern, min_words)
    if not starts:
        return [(None, text)]
    parts: list[tuple[str | None, str]] = []
    front = text[: starts[0].start()]
    for k, match in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
        parts.append((" ".join(match.group(0).split()).lstrip("# "), text[match.start():end]))
    if len(front.split()) >= min_words:
        parts.insert(0, (None, front))
    elif front.strip():
        heading, body = parts[0]
        parts[0] = (heading, front + body)
    return parts


# -- readers: path -> [(heading, text)] and the document's own title ----------------------------
def _read_text_file(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


@cache
def _word_frequency() -> Any:
    """pyspellchecker's English word-frequency list (counts per lower-case word)."""
    from spellchecker import SpellChecker

    return SpellChecker(distance=1).word_frequency


def join_line_end_hyphens(text: str) -> str:
    """Decide each `word-` + line break + `word` of extracted PDF text from evidence, in order:
    1. the document itself: whichever of `ab` and `a-b` it uses more elsewhere;
    2. a capital or digit after the hyphen (`non-\\nGaussian`) or a one-letter first part
       (`X-\\nray`) keeps the hyphen;
    3. the English word list (pyspellchecker's frequencies): `ab` a known word -> joined
       (`model-\\nling` -> modelling); both parts known words and `ab` not -> kept
       (`near-\\ninfrared`); neither -> joined (a typesetter's break in a rare word).
    The line break itself always goes: the two parts become one token."""
    if "-\n" not in text:
        return text
    seen = Counter(w.lower() for w in HYPHENATED.findall(HYPHEN_BREAK.sub(" ", text)))
    words = _word_frequency()

    def decide(m: re.Match[str]) -> str:
        a, b = m.group(1), m.group(2)
        joined, hyphenated = (a + b).lower(), f"{a}-{b}".lower()
        if seen[joined] != seen[hyphenated]:
            return a + b if seen[joined] > seen[hyphenated] else f"{a}-{b}"
        if b[0].isupper() or len(a) == 1:
            return f"{a}-{b}"
        if words[joined] > 0:
            return a + b
        return f"{a}-{b}" if words[a.lower()] > 0 and words[b.lower()] > 0 else a + b

    return HYPHEN_BREAK.sub(decide, text)


def read_pdf(path: Path) -> tuple[str, str | None]:
    """(text of all pages, metadata title); hyphenated line breaks are joined."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise DocumentError("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except PdfReadError as exc:
        raise DocumentError(f"unreadable PDF: {exc}") from None
    text = join_line_end_hyphens("\n\n".join(pages))
    if not text.strip():
        raise DocumentError("no text layer (a scanned PDF needs OCR first)")
    return text, title


def _latex(tex: str, preamble: str = "") -> Any:
    from astrodata.latex.to_text import LatexError, latex_to_text

    try:
        return latex_to_text(tex, preamble=preamble)
    except LatexError as exc:
        raise DocumentError(f"LaTeX: {exc}") from None


Part = tuple[str | None, str, Counter]  # (chapter heading or None, text, losses: (kind, name) -> count)


def read_tex(path: Path, min_words: int) -> tuple[list[Part], str | None]:
    """Split the source at `\\chapter` and convert each chapter with the document's preamble;
    each part carries what its conversion could not render (`LatexText.losses`)."""
    source = _read_text_file(path)
    begin = BEGIN_DOCUMENT.search(source)
    preamble = source[: begin.start()] if begin else ""
    body_start = begin.end() if begin else 0
    starts = chapter_starts(source[body_start:], LATEX_CHAPTER, min_words)
    if not starts:
        doc = _latex(source)
        return [(None, doc.text, doc.losses)], doc.title or None
    first = body_start + starts[0].start()
    front = _latex(source[:first] + "\n\\end{document}\n")
    parts: list[Part] = []
    if front.words >= min_words:
        parts.append((None, front.text, front.losses))
    for k, match in enumerate(starts):
        end = body_start + starts[k + 1].start() if k + 1 < len(starts) else len(source)
        chunk = source[body_start + match.start(): end].replace("\\end{document}", "")
        doc = _latex(chunk, preamble)
        parts.append((match.group("key").strip(), doc.text, doc.losses))
    return parts, front.title or None


def read_document(path: Path, min_words: int) -> tuple[list[Part], str | None]:
    """([(chapter heading or None, text, losses)], the document's own title when it states one)."""
    suffix = path.suffix.lower()
    if suffix == ".tex":
        return read_tex(path, min_words)
    if suffix == ".pdf":
        text, title = read_pdf(path)
        return [(h, t, Counter()) for h, t in split_chapters(text, NUMBERED_CHAPTER, min_words)], title
    text = _read_text_file(path)
    pattern = MARKDOWN_CHAPTER if suffix == ".md" and MARKDOWN_CHAPTER.search(text) else NUMBERED_CHAPTER
    return [(h, t, Counter()) for h, t in split_chapters(text, pattern, min_words)], None


# -- rows ------------------------------------------------------------------------------------
def iter_local_documents(
    docs_dir: str | Path,
    license: str | None,
    settings: LocalDocsSettings,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Corpus rows for every .txt/.md/.tex/.pdf under `docs_dir` (recursively, sorted).

    A file that cannot be read is reported to `on_error(relative_path, reason)` and skipped;
    the others go on.
    """
    if not license or not license.strip():
        raise ValueError("local documents need a licence: pass --license (e.g. CC-BY-4.0, or "
                         "'proprietary' for private use); it is stored on every document")
    root = Path(docs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--docs folder not found: {root}")
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
        rel = path.relative_to(root).as_posix()
        try:
            parts, own_title = read_document(path, settings.min_chapter_words)
        except (DocumentError, OSError) as exc:
            if on_error is None:
                raise
            on_error(rel, str(exc))
            continue
        base_title = own_title or path.stem.replace("_", " ")
        for k, (heading, text, losses) in enumerate(parts, start=1):
            source_id = rel if len(parts) == 1 else f"{rel}#{k}"
            yield {
                "id": f"{settings.source}:{source_id}",
                "source": settings.source,
                "source_id": source_id,
                "title": f"{base_title}: {heading}" if heading else base_title,
                "text": text.strip(),
                "n_tokens": None,
                "license": license.strip(),
                "url": "",
                "date": "",
                "losses": [[kind, name, n] for (kind, name), n in losses.items()],
            }
