"""Wikitext templates that carry facts, rendered as the reader of the article sees them.

Why a table of handlers and not a template expander: a maintained expander exists
(wikitextprocessor expands templates from the dump's own `Template:` and `Module:` pages and runs
their Scribunto Lua code), but it needs every template and module page of the wiki loaded into
its page database before the first article can be expanded, and a Lua runtime (lupa) in each
worker. The inputs this stage reads do not allow that: a cut-down dump (the test fragments) has
no `Template:`/`Module:` pages at all, the `wikimedia/wikipedia` Parquet rows are already
rendered text, and a full pages-articles dump is streamed once, page by page. The templates that
matter for astronomy facts are few and documented (`val`, `convert`, `formatnum`, unit and date
templates), so each gets a handler written from its documentation page on en.wikipedia.org
(Template:Val, Template:Convert, Help:Magic words#formatnum, ...). Everything else is either
known to carry no article prose (`KNOWN_NON_PROSE`: infoboxes, citations, maintenance tags,
navigation) or unknown: an unknown template renders as "" and is counted per page, as
("template", name), so the catalog says which ones a build lost.

`render_template(name, positional, named, render)` gets the parameters already rendered to text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

# Template -> the positional parameter that is its text ({{lang|fr|texte}} -> texte).
INLINE = {"nowrap": 1, "nobr": 1, "small": 1, "smaller": 1, "larger": 1, "big": 1, "em": 1, "sc": 1,
          "smallcaps": 1, "lang": 2, "math": 1, "mvar": 1, "var": 1, "abbr": 1, "transl": 2, "sub": 1,
          "sup": 1, "ill": 1, "nowiki": 1, "not a typo": 1, "sic": 1, "proper name": 1, "tooltip": 1,
          "keypress": 1, "vr": 1, "linktext": 1, "overline": 1, "strong": 1, "ital": 1, "bold": 1,
          "ce": 1, "chem": 1, "chem2": 1, "script": 2, "anchor": 0, "flag": 1, "flagcountry": 1,
          "nobold": 1, "native name": 2, "noitalic": 1, "resize": 1}
SYMBOLS = {"solar mass": "M☉", "solar radius": "R☉", "solar luminosity": "L☉", "earth mass": "M⊕",
           "earth radius": "R⊕", "jupiter mass": "MJ", "jupiter radius": "RJ", "solar metallicity": "Z☉",
           "ndash": "–", "mdash": "—", "snd": " – ", "spaced ndash": " – ", "spaced en dash": " – ",
           "nbsp": " ", "thinsp": " ", "'": "'", "=": "=", "!": "|", "pi": "π", "±": "±", "pm": "±",
           "sun": "☉", "earth": "⊕", "degree": "°", "times": "×", "minus": "−", "ly": "ly", "au": "AU",
           "au.": "AU", "spaces": " ", "parsec": "pc", "e-": "e−", "middot": "·", "dot": "·", "•": " • ", "bull": " • "}
RANGE_WORDS = {"to": "to", "-": "–", "–": "–", "and": "and", "or": "or", "by": "by", "x": "×", "×": "×",
               "+/-": "±", "±": "±", "to(-)": "to", "and(-)": "and", "&": "&"}
MONTHS = ("January February March April May June July August September October November "
          "December").split()
#: templates that carry no article prose: dropped without being counted (prefix match on the
#: lower-cased name, or the whole name)
KNOWN_NON_PROSE = re.compile(
    r"^(infobox|cite|citation|reflist|refn|ref |sfn|harv|efn|notelist|note label|short description|use |"
    r"main|see also|further|about|redirect|distinguish|other |for\b|commons|portal|navbox|.*navbox$|"
    r"authority control|taxonbar|coord|clear|toc|pp|good article|featured|spoken wikipedia|webarchive|"
    r"dead link|citation needed|cn$|fact$|when$|who$|by whom|clarify|verify|better source|failed verification|"
    r"dubious|update|more citations|refimprove|unreferenced|multiple issues|cleanup|wikt|wikisource|"
    r"wikiquote|sister project|multiple image|image|wide image|gallery|sidebar|.*sidebar$|defaultsort|"
    r"displaytitle|lowercase title|italic title|.*-stub$|stub$|div col|colbegin|colend|col-|columns-list|"
    r"s-|succession|refbegin|refend|listen|audio|location map|external media|wikibooks|wikiversity|wikinews|"
    r"wikivoyage|wikispecies|curlie|dmoz|official website|imdb|isbn|doi|bibcode|arxiv|jstor|pmid|"
    r"rp$|r$|page needed|year needed|full citation needed|inflation|lead too short|"
    r"expand|fix|tone|essay|npov|pov|original research|self-published|primary sources|"
    r"one source|third-party|notability|technical|confusing|copy edit|very long|split|merge|"
    r"orphan|dead end|underlinked|external links|cleanup|hatnote|selfref|broader|details|"
    r"category|cat |bots|nobots|short pages monitor|ping|reply|tl$|tlx$|subst|nowrap begin|nowrap end|"
    r"end$|top$|bottom$|citeref|vcite|lang-x|!-$|-$|break$|br$|crlf|hidden|collapse|"
    r"ubl$|plainlist$|endplainlist|flatlist$|endflatlist|hlist$|bulleted list$|unbulleted list$|"
    r"astronomy|constellation|solar system|star$|planet|moon|stars|exoplanet|sky$|flagicon|increase|decrease|"
    r"steady|disambiguation|wikipedia books|library resources box|more footnotes|legend)"
)
# list templates whose parameters are the items
LISTS = {"ubl", "unbulleted list", "plainlist", "flatlist", "hlist", "bulleted list", "cslist", "enum"}


def _number(s: str) -> bool:
    """A number as {{convert}} takes it: `1,234.5`, `3.0e8`, `−40`, a fraction `1/2` or mixed `2+1/2`."""
    return bool(re.fullmatch(r"[-−+]?(?:[\d,]*\.?\d+(?:e[-+]?\d+)?|(?:\d+\+)?\d+/\d+)",
                             s.strip().replace(" ", "")))


#: {{convert}}'s `e3`/`e6`/`e9`/`e12` unit prefixes: `e6km` is "million km" (Template:Convert, "e6km")
_E_PREFIX = re.compile(r"^e(3|6|9|12|15)(?=\S)")
_E_WORDS = {"3": "thousand ", "6": "million ", "9": "billion ", "12": "trillion ", "15": "quadrillion "}


def _unit(s: str) -> str:
    return _E_PREFIX.sub(lambda m: _E_WORDS[m.group(1)], s.strip())


def _formatnum(s: str) -> str:
    """Digit grouping with commas ({{formatnum:3042}} -> 3,042); anything not a number unchanged."""
    m = re.fullmatch(r"\s*([-−+]?)(\d+)(\.\d+)?\s*", s)
    if not m:
        return s.strip()
    return f"{m.group(1)}{int(m.group(2)):,}{m.group(3) or ''}"


def _val(pos: list[str], named: dict[str, str]) -> str:
    """{{val}}: value, ± uncertainty (or +a −b), ×10^e, units (Template:Val documentation)."""
    value = pos[0].strip() if pos else ""
    if not value and not named.get("e"):
        return ""
    text = named.get("p", "") + value
    if len(pos) >= 3 and pos[1].strip() and pos[2].strip():
        text += f"+{pos[1].strip().lstrip('+')}−{pos[2].strip().lstrip('-−')}"
    elif len(pos) >= 2 and pos[1].strip().startswith("("):  # {{val|1.234|(5)}}: concise uncertainty, 1.234(5)
        text += pos[1].strip()
    elif len(pos) >= 2 and pos[1].strip():
        text += f"±{pos[1].strip()}"
    if named.get("e"):
        text += f"×10^{named['e'].strip()}" if value else f"10^{named['e'].strip()}"
    unit = named.get("u") or named.get("ul") or ""
    per = named.get("up") or named.get("upl") or ""
    if unit:
        text += f" {unit.strip()}"
    if per:
        text += f"/{per.strip()}"
    return text + named.get("s", "") + named.get("end", "")


def _convert(pos: list[str], named: dict[str, str]) -> str:
    """{{convert}}/{{cvt}}: the value(s) and unit as written, ranges ("1 to 3 km") and mixed units
    ("5 ft 6 in") included; the converted value is left out (it needs the unit tables of
    Module:Convert and says nothing the given one does not)."""
    parts: list[str] = []
    i = 0
    while i < len(pos) and _number(pos[i]):
        parts.append(pos[i].strip())
        i += 1
        while i + 1 < len(pos) and pos[i].strip() in RANGE_WORDS and _number(pos[i + 1]):
            parts += [RANGE_WORDS[pos[i].strip()], pos[i + 1].strip()]
            i += 2
        if i < len(pos) and pos[i].strip() and not _number(pos[i]):
            parts.append(_unit(pos[i]))
            i += 1
        if i >= len(pos) or not _number(pos[i]):
            break
    return " ".join(parts)


def _date(pos: list[str], named: dict[str, str]) -> str:
    """{{start date|1969|7|16}} -> July 16, 1969 (16 July 1969 with df=y); a year alone stays."""
    nums = [p.strip() for p in pos if p.strip()]
    if not nums or not nums[0].lstrip("-").isdigit():
        return " ".join(nums)
    year = nums[0]
    if len(nums) < 2 or not nums[1].isdigit() or not 1 <= int(nums[1]) <= 12:
        return year
    month = MONTHS[int(nums[1]) - 1]
    if len(nums) < 3 or not nums[2].isdigit():
        return f"{month} {year}"
    day = int(nums[2])
    return f"{day} {month} {year}" if named.get("df", "").lower() in ("y", "yes", "1") else f"{month} {day}, {year}"


def _aged(pos: list[str], named: dict[str, str]) -> str:
    """{{death date and age|2012|8|25|1930|8|5}} -> August 25, 2012 (aged 82)."""
    nums = [p.strip() for p in pos if p.strip()]
    text = _date(nums[:3], named)
    if len(nums) >= 6 and all(n.isdigit() for n in nums[:6]):
        try:
            end, start = date(*map(int, nums[:3])), date(*map(int, nums[3:6]))
        except ValueError:
            return text
        age = end.year - start.year - ((end.month, end.day) < (start.month, start.day))
        text += f" (aged {age})"
    return text


def _year_and_age(pos: list[str], named: dict[str, str]) -> str:
    """{{birth year and age|1930}} -> 1930; {{death year and age|2012|1930}} -> 2012 (aged 81–82)."""
    nums = [p.strip() for p in pos if p.strip()]
    if len(nums) >= 2 and nums[0].isdigit() and nums[1].isdigit():
        age = int(nums[0]) - int(nums[1])
        return f"{nums[0]} (aged {age - 1}–{age})"
    return nums[0] if nums else ""


def _ra(pos: list[str], named: dict[str, str]) -> str:
    return " ".join(f"{v.strip()}{u}" for v, u in zip(pos, "hms", strict=False) if v.strip())


def _dec(pos: list[str], named: dict[str, str]) -> str:
    return " ".join(f"{v.strip()}{u}" for v, u in zip(pos, "°′″", strict=False) if v.strip())


def _frac(pos: list[str], named: dict[str, str]) -> str:
    p = [x.strip() for x in pos]
    if len(p) >= 3:
        return f"{p[0]} {p[1]}/{p[2]}"
    if len(p) == 2:
        return f"{p[0]}/{p[1]}"
    return f"1/{p[0]}" if p else ""


HANDLERS: dict[str, Callable[[list[str], dict[str, str]], str]] = {
    "val": _val,
    "convert": _convert, "cvt": _convert,
    "circa": lambda p, n: f"c. {p[0].strip()}" if p else "c.", "c.": lambda p, n: f"c. {p[0].strip()}" if p else "c.",
    "frac": _frac, "sfrac": _frac, "fraction": _frac,
    "ra": _ra, "dec": _dec,
    "e": lambda p, n: f"×10^{p[0].strip()}" if p else "",
    "10^": lambda p, n: f"10^{p[0].strip()}" if p else "10",
    "sqrt": lambda p, n: f"√{p[0].strip()}" if p else "√",
    "start date": _date, "end date": _date, "birth date": _date, "death date": _date, "date": _date,
    "dts": _date, "start date and age": _date, "birth date and age": _date, "film date": _date,
    "death date and age": _aged,
    "birth year and age": lambda p, n: p[0].strip() if p else "", "death year and age": _year_and_age,
    "as of": lambda p, n: "As of " + " ".join(x.strip() for x in p[:3] if x.strip()),
    "quote": lambda p, n: (n.get("text") or (p[0] if p else "")).strip(),
    "blockquote": lambda p, n: (n.get("text") or (p[0] if p else "")).strip(),
    **{name: (lambda p, n: ", ".join(x.strip() for x in p if x.strip())) for name in LISTS},
}
PARSER_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "formatnum": _formatnum, "lc": str.lower, "uc": str.upper, "defaultsort": lambda s: "",
    "displaytitle": lambda s: "",
    "ucfirst": lambda s: s[:1].upper() + s[1:], "lcfirst": lambda s: s[:1].lower() + s[1:],
}


def render_template(name: str, positional: list[str], named: dict[str, str]) -> str | None:
    """Text of one template call (parameters already rendered); None for an unknown template.
    `name` is as written; magic words such as `formatnum:3042` arrive with their argument."""
    key = " ".join(name.replace("_", " ").split()).lower()
    if ":" in key and not key.startswith(":"):
        func, _, arg = name.partition(":")
        handler = PARSER_FUNCTIONS.get(func.strip().lower())
        return handler(arg.strip()) if handler else None
    if key in SYMBOLS:
        return SYMBOLS[key]
    if key in INLINE:
        k = INLINE[key]
        return positional[k - 1].strip() if 0 < k <= len(positional) else ""
    if key in HANDLERS:
        return HANDLERS[key](positional, named)
    if key.startswith("lang-") and positional:  # {{lang-fr|texte}}: the foreign-language text
        return positional[-1].strip()
    if KNOWN_NON_PROSE.match(key):
        return ""
    return None
