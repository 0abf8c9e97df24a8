"""One LaTeX document out of an e-print's files: find the main file, splice its inputs.

Hand-written because no library does this on in-memory sources without running TeX
(latexpand and flachtex shell out or read from disk, which an untrusted e-print must never steer).
Paths are resolved the way TeX does, relative to the main file's folder (the directory TeX runs in),
with the `import` package's per-directory rules for `\\import`/`\\subimport`, and only ever looked up
in `Eprint.files`: `\\input{/etc/passwd}` or `\\input{../../x}` finds nothing and is recorded as missing.
Comments are left in place, but an `\\input` inside a comment (or a verbatim block) is not expanded.

`python -m astrodata.latex.flatten DIR` prints the per-paper table (main file, files, missing inputs,
encoding) for a folder of e-prints.
"""

from __future__ import annotations

import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from astrodata.sources.eprints import TEXT_SUFFIXES, Eprint, EprintError

MAX_DEPTH = 20  # nested inputs; real papers use 2-3
MAX_CHARS = 64 << 20  # flattened size; an input repeated 10x per level for 10 levels stops here
MAIN_NAMES = ("ms", "main", "paper", "manuscript", "article")  # preferred stems, best first
MAIN_SUFFIXES = (".tex", ".ltx", ".latex", "")  # what a main file may be called

# Spans where TeX does not read commands: the \\ and \% escapes, \verb (\lstinline, \mintinline;
# unclosed: to the line end, as TeX reads it), verbatim-like blocks
# (their end is found by hand: a regex `.*?` to a missing \end would rescan the file per opening).
# Every alternative starts with a literal `%` or `\`, so the regex engine skips plain text at C speed.
_ESCAPE = r"(?P<esc>[\\%])"
_VERB = (r"(?P<verb>verb\*?(?P<vd>[^A-Za-z\s*])[^\n]{0,200}?(?:(?P=vd)|(?=\n))"
         r"|(?:lstinline(?:\[[^\]\n]*\])?|mintinline(?:\[[^\]\n]*\])?\s*\{[^{}\n]*\})"
         r"(?:\{[^}\n]{0,200}\}|(?P<ld>[^A-Za-z\s{])[^\n]{0,200}?(?:(?P=ld)|(?=\n))))")
_VERBATIM_BEGIN = r"(?P<vbeg>begin\s*\{(?P<venv>verbatim|Verbatim|lstlisting|minted|comment)(?P<vstar>\*?)\})"
# A comment eats its line end and the next line's indentation, unless that next line is blank
# (which still ends the paragraph): exactly what TeX does with `%`.
_COMMENT = r"%(?P<comment>[^\n]*(?:\n(?![ \t]*\n)[ \t]*)?)"


def _arg(group: str) -> str:
    return r"\s*\{(?P<" + group + r">[^{}]*)\}"


def _commands(*alternatives: str) -> re.Pattern[str]:
    return re.compile(_COMMENT + r"|\\(?:" + "|".join([_ESCAPE, _VERB, _VERBATIM_BEGIN, *alternatives]) + ")")


# \\url, \\path, \\nolinkurl and \\href's URL are read verbatim by TeX: a `%` there is text
_COMMENTS = _commands(r"(?P<url>(?:url|path|nolinkurl|href)\s*(?:\{[^{}\n]*\}|(?P<ud>[^A-Za-z\s{])[^\n]*?(?P=ud)))")
_SCAN = _commands(
    r"(?P<input>(?P<cmd>input|include|subfile)(?![A-Za-z@])"
    r"(?:\s*\{(?P<arg>[^{}]*)\}|[ \t]+(?P<bare>[^\s{}\\%]+)))",
    r"(?P<import>(?P<icmd>import|subimport|inputfrom|subinputfrom|includefrom|subincludefrom)\*?"
    + _arg("idir") + _arg("ifile") + ")",
    r"(?P<bib>bibliography" + _arg("bibs") + ")",
    r"(?P<pkg>(?:usepackage|RequirePackage)\s*(?:\[[^\]]*\])?" + _arg("pkgs") + ")",
    r"(?P<endinput>endinput(?![A-Za-z@])[^\n]*)",
)
_DOCUMENTCLASS = re.compile(r"\\document(?:class|style)(?![A-Za-z@])\s*(?:\[[^\]]*\])?\s*\{(?P<cls>[^{}]*)\}")
_BEGIN_DOCUMENT = re.compile(r"\\begin\s*\{document\}")
_END_DOCUMENT = re.compile(r"\\end\s*\{document\}")


def _verbatim_end(text: str, m: re.Match[str]) -> int:
    """End of a verbatim-like block opened by `m`; an unclosed one runs to the end, as in TeX."""
    end = re.compile(r"\\end\s*\{" + m["venv"] + re.escape(m["vstar"]) + r"\}").search(text, m.end())
    return end.end() if end else len(text)


def strip_comments(text: str) -> str:
    """Drop `%` comments (not `\\%`, and not inside `\\verb` or verbatim blocks) and `comment`
    environments, joining lines the way TeX does."""
    out: list[str] = []
    pos = 0
    while (m := _COMMENTS.search(text, pos)) is not None:
        if m["vbeg"] is not None:
            end = _verbatim_end(text, m)
            out.append(text[pos:m.start()] if m["venv"] == "comment" else text[pos:end])
            pos = end
        elif m["comment"] is not None:
            out.append(text[pos:m.start()])
            pos = m.end()
        else:
            out.append(text[pos:m.end()])
            pos = m.end()
    out.append(text[pos:])
    return "".join(out)


@dataclass
class Flattened:
    text: str
    main_file: str
    missing_inputs: list[str] = field(default_factory=list)  # as written in the source, first seen first
    included: list[str] = field(default_factory=list)  # files spliced in, in order
    packages: dict[str, str] = field(default_factory=dict)  # local .sty files loaded by \usepackage
    bbl: str | None = None  # the .bbl spliced in for \bibliography, if any
    notes: list[str] = field(default_factory=list)  # cycles, depth limit, refused paths


def _is_tex_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in MAIN_SUFFIXES


def _candidates(name: str) -> list[str]:
    """TeX tries `name.tex` before `name` unless the name already has a known extension."""
    ext = posixpath.splitext(name)[1].lower()
    return [name, name + ".tex"] if ext and ext in TEXT_SUFFIXES else [name + ".tex", name]


def _resolve(files: dict[str, str], name: str, bases: list[str]) -> str | None:
    """The e-print file `name` denotes from one of the `bases`, or None; never leaves the root."""
    if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
        return None
    for base in bases:
        for cand in _candidates(name):
            path = posixpath.normpath(posixpath.join(base, cand))
            if not path.startswith("../") and path in files:
                return path
    return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _references(files: dict[str, str], name: str, body: str) -> list[str]:
    """Files that `name` pulls in with \\input-like commands (comments already stripped)."""
    found = []
    base = posixpath.dirname(name)
    for m in _SCAN.finditer(body):
        if m["input"] is not None or m["import"] is not None:
            arg = m["ifile"] if m["import"] else m["arg"] or m["bare"]
            bases = [posixpath.join(base, m["idir"])] if m["import"] else [base, ""]
            path = _resolve(files, arg.strip(), bases)
            if path and path != name:
                found.append(path)
    return found


def _opens_document(files: dict[str, str], stripped: dict[str, str], name: str, max_files: int = 200) -> bool:
    """Whether `name`, or a file it inputs (transitively, at most `max_files`), has `\\begin{document}`:
    some authors keep the preamble in the main file and `\\input` a body that opens the document."""
    seen, queue = {name}, [name]
    while queue and len(seen) <= max_files:
        current = queue.pop()
        body = stripped.get(current)
        if body is None:
            continue
        if _BEGIN_DOCUMENT.search(body):
            return True
        for path in _references(files, current, body):
            if path not in seen:
                seen.add(path)
                queue.append(path)
    return False


def find_main_file(files: dict[str, str]) -> str:
    """The file TeX would be run on: `\\documentclass` (or 2.09's `\\documentstyle`) and
    `\\begin{document}` outside comments, in the file itself or in a file it inputs.

    Several candidates (subfiles, a referee reply, an old draft) are ranked deterministically: not
    \\input by another candidate, not a `subfiles` child, shallowest folder, a conventional name
    (ms, main, paper, ...), most inputs, largest, then by path."""
    stripped = {name: strip_comments(text) for name, text in files.items() if _is_tex_name(name)}
    bodies = {name: body for name, body in stripped.items()
              if _DOCUMENTCLASS.search(body) and _opens_document(files, stripped, name)}
    if not bodies:
        raise EprintError("no-main-file", "no file has \\documentclass and \\begin{document} (itself or in "
                                          "a file it inputs)")
    refs = {name: _references(files, name, body) for name, body in bodies.items()}
    referenced = {path for paths in refs.values() for path in paths}

    def rank(name: str) -> tuple:
        cls = _DOCUMENTCLASS.search(bodies[name])["cls"].strip()  # type: ignore[index]
        stem = posixpath.splitext(posixpath.basename(name))[0].lower()
        pref = MAIN_NAMES.index(stem) if stem in MAIN_NAMES else len(MAIN_NAMES)
        return (name in referenced, cls == "subfiles", name.count("/"), pref, -len(refs[name]), -len(files[name]), name)

    return min(bodies, key=rank)


class _Flattener:
    def __init__(self, eprint: Eprint, main: str, bbl: str, max_depth: int, max_chars: int) -> None:
        self.files = eprint.files
        self.main_dir = posixpath.dirname(main)
        self.bbl_mode = bbl
        self.max_depth = max_depth
        self.max_chars = max_chars
        self.size = 0
        self.result = Flattened(text="", main_file=main)
        self._bbl_name = posixpath.splitext(main)[0] + ".bbl"
        self._missing: set[str] = set()

    def bases(self, current: str, import_dir: str | None) -> list[str]:
        """TeX looks in its working directory (the main file's); `import` adds the import dir. The
        including file's own folder and the root are tried last, which rescues sloppy e-prints."""
        dirs = [import_dir] if import_dir is not None else []
        return _unique([*dirs, self.main_dir, posixpath.dirname(current), ""])

    def missing(self, name: str, why: str = "") -> None:
        if name not in self._missing:
            self._missing.add(name)
            self.result.missing_inputs.append(name)
        if why:
            self.result.notes.append(f"{why}: {name}")

    def splice(self, path: str, stack: list[str], import_dir: str | None, subfile: bool) -> str:
        if path in stack:
            self.result.notes.append("input cycle: " + " -> ".join([*stack, path]))
            return ""
        if len(stack) > self.max_depth:
            self.result.notes.append(f"input depth over {self.max_depth} at {path}")
            return ""
        text = self.files[path]
        if subfile:  # a subfiles child is a whole document: keep only its body
            begin, end = _BEGIN_DOCUMENT.search(text), _END_DOCUMENT.search(text)
            if begin:
                text = text[begin.end() : end.start() if end and end.start() > begin.end() else len(text)]
        self.size += len(text)
        if self.size > self.max_chars:
            raise EprintError("include-bomb", f"flattened text over {self.max_chars} characters at {path}")
        self.result.included.append(path)
        body = self.expand(text, [*stack, path], import_dir)
        return body if body.endswith("\n") else body + "\n"  # TeX ends every input file with a line end

    def expand(self, text: str, stack: list[str], import_dir: str | None) -> str:
        current = stack[-1]
        out: list[str] = []
        pos = 0
        while (m := _SCAN.search(text, pos)) is not None:
            out.append(text[pos : m.start()])
            pos = m.end()
            if m["vbeg"] is not None:
                pos = _verbatim_end(text, m)
                out.append(text[m.start() : pos])
            elif m["input"] is not None:
                name = (m["arg"] or m["bare"] or "").strip().strip('"')
                path = _resolve(self.files, name, self.bases(current, import_dir)) if name else None
                if path is None:
                    self.missing(name or m.group(), "outside the e-print" if _outside(name) else "")
                    out.append(m.group())
                else:
                    out.append(self.splice(path, stack, import_dir, subfile=m["cmd"] == "subfile"))
            elif m["import"] is not None:
                out.append(self.imported(m, stack, import_dir))
            elif m["bib"] is not None:
                out.append(self.bibliography(m.group()))
            elif m["pkg"] is not None:
                self.packages(m["pkgs"], current)
                out.append(m.group())
            elif m["endinput"] is not None:
                out.append(m.group()[len("\\endinput") :])
                return "".join(out)
            else:
                out.append(m.group())
        out.append(text[pos:])
        return "".join(out)

    def imported(self, m: re.Match[str], stack: list[str], import_dir: str | None) -> str:
        """`\\import{dir}{file}`: dir from the working directory; `\\subimport`: from the current one."""
        relative = m["icmd"].startswith("sub")
        anchor = (import_dir if import_dir is not None else posixpath.dirname(stack[-1])) if relative else self.main_dir
        name = m["ifile"].strip()
        written = posixpath.join(m["idir"].strip(), name)
        new_dir = posixpath.normpath(posixpath.join(anchor, m["idir"].strip()))
        path = _resolve(self.files, name, [new_dir])
        if path is None:
            self.missing(written, "outside the e-print" if _outside(written) else "")
            return m.group()
        return self.splice(path, stack, new_dir, subfile=False)

    def bibliography(self, command: str) -> str:
        if self.bbl_mode == "drop":
            return ""
        path = _resolve(self.files, self._bbl_name, [""]) or _resolve(
            self.files, posixpath.basename(self._bbl_name), [""]
        )
        if path is None:
            return command
        self.result.bbl = path
        return self.files[path]

    def packages(self, names: str, current: str) -> None:
        for name in (n.strip() for n in names.split(",")):
            path = _resolve(self.files, name + ".sty", self.bases(current, None)) if name else None
            if path is not None:
                self.result.packages[name] = self.files[path]


def _outside(name: str) -> bool:
    """Absolute, drive-letter or `..`-climbing paths: never resolvable inside an e-print."""
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in re.split(r"[/\\]", name)


def flatten(
    eprint: Eprint, bbl: str = "inline", max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS
) -> Flattened:
    """The main file with every resolvable input spliced in; what cannot be found is recorded.

    `bbl="inline"` replaces `\\bibliography{...}` with the main file's .bbl when the e-print has
    one (left as is otherwise); `bbl="drop"` removes the command."""
    if bbl not in ("inline", "drop"):
        raise ValueError(f"bbl must be 'inline' or 'drop', not {bbl!r}")
    main = find_main_file(eprint.files)
    flattener = _Flattener(eprint, main, bbl, max_depth, max_chars)
    flattener.result.text = flattener.expand(eprint.files[main], [main], None)
    flattener.result.included.insert(0, main)
    return flattener.result


def survey(folder: Path) -> list[dict[str, object]]:
    """Per e-print in `folder`: main file, number of files, missing inputs, encoding (or the error)."""
    from astrodata.sources.eprints import iter_local_eprints, unpack_eprint

    rows: list[dict[str, object]] = []
    for eprint_id, path in iter_local_eprints(folder):
        row: dict[str, object] = {"id": eprint_id, "file": path.name}
        try:
            eprint = unpack_eprint(path, eprint_id)
            flat = flatten(eprint)
            row.update(kind=eprint.kind, main=flat.main_file, n_files=len(eprint.files),
                       included=len(flat.included), missing=flat.missing_inputs, encoding=eprint.encoding,
                       chars=len(flat.text))
        except EprintError as exc:
            row.update(error=exc.reason)
        rows.append(row)
    return rows


def _print_survey(folder: Path) -> None:
    print(f"| {'e-print':<24} | {'kind':<8} | {'main file':<28} | files | incl | {'chars':>7} | encoding | missing inputs")
    print(f"|{'-' * 26}|{'-' * 10}|{'-' * 30}|-------|------|---------|----------|---------------")
    for r in survey(folder):
        if "error" in r:
            print(f"| {r['id']:<24} | error: {r['error']}")
            continue
        missing = ", ".join(r["missing"]) or "-"  # type: ignore[arg-type]
        print(f"| {r['id']:<24} | {r['kind']:<8} | {r['main']:<28} | {r['n_files']:>5} | {r['included']:>4} "
              f"| {r['chars']:>7} | {r['encoding']:<8} | {missing}")


if __name__ == "__main__":
    _print_survey(Path(sys.argv[1]))
