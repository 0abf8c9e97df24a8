"""Tables of the LaTeX-to-text converter (`to_text.py`): what each prose command and environment
becomes. Data only; the scanner that uses them is `to_text._Converter`.

Argument specs: "*" optional star, "[" optional [..], "{" mandatory argument, "g" optional {..}.
"""

from __future__ import annotations

import re

SECTIONS = {"part": 2, "chapter": 2, "section": 2, "subsection": 3, "subsubsection": 4}
CITES = frozenset(
    """cite citep citet citealt citealp citeauthor citeyear citeyearpar citenum citetext Cite Citep
    Citet Citealt Citealp Citeauthor parencite textcite autocite footcite fullcite citetalias
    citepalias shortcite shortciteN citeN""".split()
)
REFS = frozenset(
    """ref eqref autoref Autoref cref Cref crefrange Crefrange pageref nameref vref Vref ref*
    subref labelcref""".split()
)
DROP: dict[str, str] = {
    # front matter (the title and abstract are taken separately; authors come from metadata)
    **dict.fromkeys(
        """author affiliation affil altaffiliation institute email thanks orcid orcidlink
        correspondingauthor date received revised accepted published submitjournal
        journalinfo shorttitle shortauthors titlerunning authorrunning subtitle pacs icmltitle
        icmlauthor icmlaffiliation icmlcorrespondingauthor icmlkeywords icmlsetsymbol
        collaboration nocollaboration AuthorCollaborationLimit title mail offprints
        affiliations address""".split(),
        "*[{",
    ),
    "collaboration": "{g",  # aastex 6.3 takes two groups, 6.2 one
    "icmlauthor": "{{",
    "icmlaffiliation": "{{",
    "icmlcorrespondingauthor": "{{",
    "icmlsetsymbol": "{{",
    # layout, references, files
    **dict.fromkeys(
        """label vspace hspace vskip hskip bibliographystyle bibliography nocite input include
        includeonly graphicspath pagestyle thispagestyle urlstyle hypersetup setcitestyle phantom
        hphantom vphantom tablewidth tabletypesize epsscale figurenum linespread setstretch
        script addbibresource pagenumbering enlargethispage bibpunct suppressAffiliations
        linenumbers modulolinenumbers nolinenumbers tablenum setlist sisetup captionsetup lstset
        setminted""".split(),
        "*[{",
    ),
    "includegraphics": "*[[{",
    "plotone": "{",
    "plottwo": "{{",
    "color": "[{",
    "definecolor": "{{{",
    "colorlet": "{{",
    "setlength": "{{",
    "setkeys": "{{",
    "addtolength": "{{",
    "setcounter": "{{",
    "addtocounter": "{{",
    "newtheorem": "*{[{[",
    "defcitealias": "{{",
    "deleted": "[{",
    "todo": "[{",
    "correspondingauthors": "{g",
    "printAffiliationsAndNotice": "{",
    "pagerange": "{",
    "bsp": "",
    "listofchanges": "[",
    "restartappendixnumbering": "",
    "raggedbottom": "",
    "sloppypar": "",
    "DeclareAcronym": "{{",
    "acro": "{[{",
    "acrodef": "{[{",
    "newacronym": "[{{{",
    "acsetup": "{",
    "acused": "{",
    "acuse": "{",
    "acresetall": "",
    "usepackage": "[{",
    "RequirePackage": "[{",
    "documentclass": "[{",
    "fontsize": "{{",
    "rule": "[{{",
    "addcontentsline": "{{{",
    "crefname": "{{{",
    "Crefname": "{{{",
    "tablenotetext": "{{",
    "tablecomments": "{",
    "tablehead": "{",
    "colhead": "{",
    "footnotemark": "[",
    "twocolumn": "[",
    "onecolumn": "",
    "startlongtable": "",
    "nodata": "",
    "appendix": "",
    "maketitle": "",
    "tableofcontents": "",
    "noindent": "",
    "indent": "",
    "centering": "",
    "raggedright": "",
    "raggedleft": "",
    "clearpage": "",
    "cleardoublepage": "",
    "newpage": "",
    "pagebreak": "[",
    "nopagebreak": "[",
    "linebreak": "[",
    "nolinebreak": "[",
    "hfill": "",
    "vfill": "",
    "hline": "",
    "botrule": "",
    "Hy@raisedlink": "{",
    "smallskip": "",
    "medskip": "",
    "bigskip": "",
    "FloatBarrier": "",
    "balance": "",
    "protect": "",
    "relax": "",
    "leavevmode": "",
    "null": "",
    "sloppy": "",
    "fussy": "",
    "makeatletter": "",
    "makeatother": "",
    "normalfont": "",
    "selectfont": "",
    "today": "",
    "xspace": "",
    "nobreak": "",
    "allowbreak": "",
    "frenchspacing": "",
    "unskip": "",
    "ignorespaces": "",
    "par": "",
    "else": "",
    "fi": "",
    "bgroup": "",
    "egroup": "",
    "begingroup": "",
    "endgroup": "",
    "global": "",
    "long": "",
    "expandafter": "",
    "noexpand": "",
    "csname": "",
    "endcsname": "",
    "string": "",
    "ProvidesPackage": "{[",
    "NeedsTeXFormat": "{[",
    "IfFileExists": "{",
    "startdata": "",
    "enddata": "",
    "tablebreak": "",
}
# font size and shape switches: no text of their own
DROP.update(dict.fromkeys("""tiny scriptsize footnotesize small normalsize large Large LARGE huge Huge bf it rm sc sl sf tt
    em bfseries itshape mdseries upshape scshape slshape ttfamily rmfamily sffamily boldmath
    unboldmath""".split(), ""))
# \looseness=-1 and friends: a TeX parameter assignment, value dropped with it.
ASSIGN = re.compile(r"\s*=?\s*-?[\d.]*\s*(?:[a-z]{2}\b)?")
ASSIGNMENTS = frozenset(
    "looseness tolerance emergencystretch hbadness vbadness hfuzz vfuzz parindent parskip "
    "baselineskip tabcolsep arraystretch columnsep textfloatsep floatsep intextsep".split()
)
KEEP_SECOND = frozenset("textcolor colorbox href hyperlink hypertarget".split())  # drop the 1st argument, keep the 2nd
KEEP_FIRST = frozenset("texorpdfstring replaced uat".split())  # keep the first of two (changes: new, old)
# Commands whose argument simply is the text (name dropped, braces vanish): not "unknown".
TRANSPARENT = frozenset(
    """textit textbf emph texttt textsc textsl textsf textrm textup textmd textnormal text mbox hbox
    underline uline fbox added software facilities facility dataset doi textsuperscript textsubscript
    sloppypar centerline cutinhead rlap llap clap smash""".split()
)
BOX_ARGS = {
    "resizebox": "*{{",
    "scalebox": "{[",
    "raisebox": "{[[",
    "makebox": "[[",
    "framebox": "[[",
    "parbox": "[[[{",
    "rotatebox": "[{",
    "adjustbox": "{",
    "captionof": "{",
}
HEADING_LIKE = {
    "acknowledgments": "Acknowledgments",
    "acknowledgements": "Acknowledgements",
    "acknowledgment": "Acknowledgments",
    "acknowledgement": "Acknowledgements",
}
SYMBOLS_OVERRIDE = {
    "\\": "\n", "%": "%", "S": "§", "P": "¶", "\n": " ", "\t": " ",
    "newline": "\n",
    "-": "",
    "/": "",
    "@": "",
    "today": "",
    "quad": " ",
    "qquad": " ",
    ",": " ",
    ";": " ",
    ":": " ",
    ">": " ",
    " ": " ",
    "!": "",
    "$": "\\$",
    "ldots": "...",
    "lesssim": "≲",
    "fdg": "°",
    "fp": "",
    "gtrsim": "≳",
    "lessapprox": "⪅",
    "gtrapprox": "⪆",
    "sep": ";",
    "dots": "...",
    "textellipsis": "...",
    "LaTeX": "LaTeX",
    "TeX": "TeX",
    "LaTeXe": "LaTeX2e",
    "AmS": "AMS",
    "degree": "°",
    "textgreater": ">",
    "textless": "<",
    "textbar": "|",
    "textunderscore": "_",
    "textnumero": "No.",
    "arcsec": "″",
    "arcmin": "′",
    "farcs": "″",
    "sun": "☉",
    "odot": "☉",
    "earth": "⊕",
    "oplus": "⊕",
    "micron": "μm",
    "sq": "□",
    "textsuperscript": "^",
    "textsubscript": "_",
    "etal": "et al.",
    "eg": "e.g.",
    "ie": "i.e.",
    "aap": "A&A",
    "apj": "ApJ",
    "apjl": "ApJL",
    "apjs": "ApJS",
    "mnras": "MNRAS",
    "aj": "AJ",
    "nat": "Nature",
    "prd": "Phys. Rev. D",
    "prl": "Phys. Rev. Lett.",
    "pasp": "PASP",
}
ACCENTS = frozenset("' ` \" ^ ~ = . c H k b d r u v t".split())
FLOATS = frozenset(
    """figure figure* table table* deluxetable deluxetable* longtable longtable* wrapfigure
    wraptable sidewaysfigure sidewaysfigure* sidewaystable sidewaystable* algorithm algorithm*
    SCfigure plate listing subfigure subtable""".split()
)
DROP_ENVS = frozenset(
    """thebibliography references tikzpicture array
    icmlauthorlist comment filecontents filecontents* titlepage acronym""".split()
)
# table bodies: (column-spec arguments before the rows); rendered as Markdown tables
TABULAR_ENVS = {"tabular": "[{", "tabular*": "{[{", "tabularx": "{{", "tabulary": "{{", "longtable": "[{",
                "longtable*": "[{", "supertabular": "{", "xtabular": "{", "array": "[{", "tabu": "{"}
TABLE_FLOATS = frozenset("""table table* deluxetable deluxetable* sidewaystable sidewaystable* wraptable
    subtable""".split())
DELUXE = frozenset("deluxetable deluxetable*".split())
# rules and spacing between table rows: no text
TABLE_RULES = re.compile(
    r"\\(?:hline|toprule|midrule|bottomrule|botrule|endhead|endfirsthead|endfoot|endlastfoot|hdashline|tablebreak|"
    r"nodata(?=\s*&|\s*\\\\)|"
    r"addlinespace(?:\s*\[[^\]]*\])?|specialrule\s*\{[^{}]*\}\s*\{[^{}]*\}\s*\{[^{}]*\}|"
    r"(?:cline|hhline|cmidrule(?:\s*\([^)]*\))?|rowcolor(?:\s*\[[^\]]*\])?)\s*\{[^{}]*\}|"
    r"noalign\s*\{[^{}]*\})(?![A-Za-z@])"
)
# algorithmic / algpseudocode line commands: (words before the argument, argument count, words after)
ALGORITHM_LINES = {
    **dict.fromkeys(["State", "STATE", "Statex"], ("", 0, "")),
    **dict.fromkeys(["If", "IF"], ("if", 1, "then")),
    **dict.fromkeys(["ElsIf", "ELSIF", "ElseIf"], ("else if", 1, "then")),
    **dict.fromkeys(["Else", "ELSE"], ("else", 0, "")),
    **dict.fromkeys(["EndIf", "ENDIF"], ("end if", 0, "")),
    **dict.fromkeys(["For", "FOR", "ForAll", "FORALL"], ("for", 1, "do")),
    **dict.fromkeys(["EndFor", "ENDFOR"], ("end for", 0, "")),
    **dict.fromkeys(["While", "WHILE"], ("while", 1, "do")),
    **dict.fromkeys(["EndWhile", "ENDWHILE"], ("end while", 0, "")),
    **dict.fromkeys(["Repeat", "REPEAT"], ("repeat", 0, "")),
    **dict.fromkeys(["Until", "UNTIL"], ("until", 1, "")),
    **dict.fromkeys(["Loop", "LOOP"], ("loop", 0, "")),
    **dict.fromkeys(["EndLoop", "ENDLOOP"], ("end loop", 0, "")),
    **dict.fromkeys(["Require", "REQUIRE"], ("Require:", 0, "")),
    **dict.fromkeys(["Ensure", "ENSURE"], ("Ensure:", 0, "")),
    **dict.fromkeys(["Input", "INPUT", "KwIn"], ("Input:", 0, "")),
    **dict.fromkeys(["Output", "OUTPUT", "KwOut"], ("Output:", 0, "")),
    **dict.fromkeys(["Return", "RETURN"], ("return", 0, "")),
    **dict.fromkeys(["Print", "PRINT"], ("print", 0, "")),
    "Procedure": ("procedure", 2, ""),
    "Function": ("function", 2, ""),
    "EndProcedure": ("end procedure", 0, ""),
    "EndFunction": ("end function", 0, ""),
}
# algorithm2e blocks: name -> (opening line, closing line); "{c}" is the condition argument
ALG2E_BLOCKS = {
    **dict.fromkeys(["For", "ForEach", "ForAll"], ("for {c} do", "end for")),
    "While": ("while {c} do", "end while"), "If": ("if {c} then", "end if"), "uIf": ("if {c} then", ""),
    "ElseIf": ("else if {c} then", "end if"), "uElseIf": ("else if {c} then", ""), "Else": ("else", "end if"),
    "uElse": ("else", ""), "eIf": ("if {c} then", "end if"), "Loop": ("loop", "end loop"),
}
ALG2E_LABELS = {"KwIn": "Input", "KwOut": "Output", "KwData": "Data", "KwResult": "Result",
                "Return": "return {x}", "KwRet": "return {x}", "tcc": "▷ {x}", "tcp": "▷ {x}",
                "Input": "Input", "Output": "Output"}
ALGORITHMIC_ENVS = frozenset("algorithmic algorithmic* algpseudocode".split())
LIST_ENVS = frozenset("itemize enumerate description compactitem compactenum inparaenum asparaenum".split())
NUMBERED_LISTS = frozenset("enumerate compactenum inparaenum asparaenum".split())
KEYWORD_ENVS = frozenset("keywords keyword".split())
# dropped environments that hold no text of the paper (the acronym list is read separately)
NOT_TEXT_ENVS = frozenset("thebibliography references comment acronym filecontents filecontents* icmlauthorlist".split())
CODE_ENVS = frozenset("verbatim verbatim* Verbatim lstlisting minted alltt".split())
ENV_ARGS = {
    "minipage": "[[[{",
    "multicols": "{[",
    "multicols*": "{[",
    "CJK": "{{",
    "CJK*": "{{",
    "wrapfigure": "[{[{",
    "adjustbox": "{",
    "alignat": "{",
    "alignat*": "{",
    "subfigure": "[{",
    "subtable": "[{",
    "tabular": "[{",
    "minted": "[{",
    "lstlisting": "[",
    "thebibliography": "{",
    "otherlanguage": "{",
    "sidewaysfigure": "[",
    "deluxetable": "{",
    "deluxetable*": "{",
    "longtable": "[{",
}
ALIGNED = {
    "align": "aligned",
    "align*": "aligned",
    "eqnarray": "aligned",
    "eqnarray*": "aligned",
    "flalign": "aligned",
    "flalign*": "aligned",
    "alignat": "alignedat",
    "alignat*": "alignedat",
    "gather": "gathered",
    "gather*": "gathered",
    "multline": "gathered",
    "multline*": "gathered",
}
DISPLAY = frozenset("""equation equation* displaymath dmath dmath* math""".split()) | frozenset(ALIGNED)
# siunitx units and prefixes, for \qty{3}{\kilo\meter} & co. in prose
SI = {
    "meter": "m",
    "metre": "m",
    "second": "s",
    "gram": "g",
    "kilogram": "kg",
    "kelvin": "K",
    "ampere": "A",
    "mole": "mol",
    "candela": "cd",
    "hertz": "Hz",
    "newton": "N",
    "pascal": "Pa",
    "joule": "J",
    "watt": "W",
    "volt": "V",
    "tesla": "T",
    "gauss": "G",
    "electronvolt": "eV",
    "eV": "eV",
    "erg": "erg",
    "jansky": "Jy",
    "parsec": "pc",
    "au": "au",
    "astronomicalunit": "au",
    "lightyear": "ly",
    "year": "yr",
    "yr": "yr",
    "day": "d",
    "hour": "h",
    "minute": "min",
    "degree": "°",
    "arcminute": "′",
    "arcsecond": "″",
    "arcsec": "″",
    "radian": "rad",
    "steradian": "sr",
    "angstrom": "Å",
    "percent": "%",
    "solarmass": "M☉",
    "solarradius": "R☉",
    "solarluminosity": "L☉",
    "jupitermass": "M_J",
    "jupiterradius": "R_J",
    "earthmass": "M⊕",
    "earthradius": "R⊕",
    "milliarcsecond": "mas",
    "mas": "mas",
    "barn": "b",
    "liter": "L",
    "litre": "L",
    "km": "km",
    "m": "m",
    "s": "s",
    "kg": "kg",
    "g": "g",
    "K": "K",
    "pc": "pc",
    "kpc": "kpc",
    "Mpc": "Mpc",
    "Gpc": "Gpc",
    "h": "h",
    "Hz": "Hz",
    "keV": "keV",
    "MeV": "MeV",
    "GeV": "GeV",
    "TeV": "TeV",
    "cm": "cm",
    "mm": "mm",
    "nm": "nm",
    "um": "μm",
    "J": "J",
    "W": "W",
    "Jy": "Jy",
    "mJy": "mJy",
    "Gyr": "Gyr",
    "Myr": "Myr",
    "kyr": "kyr",
    "ohm": "Ω",
    "AU": "au",
}
SI_PREFIX = {
    "yocto": "y",
    "zepto": "z",
    "atto": "a",
    "femto": "f",
    "pico": "p",
    "nano": "n",
    "micro": "μ",
    "milli": "m",
    "centi": "c",
    "deci": "d",
    "deca": "da",
    "hecto": "h",
    "kilo": "k",
    "mega": "M",
    "giga": "G",
    "tera": "T",
    "peta": "P",
    "exa": "E",
}
SIUNITX = {  # argument spec, then what each mandatory argument is: N(umber) or U(nit)
    "SI": ("[{[{", "NU"), "qty": ("[{{", "NU"), "SIrange": ("[{{{", "NNU"), "qtyrange": ("[{{{", "NNU"),
    "si": ("[{", "U"), "unit": ("[{", "U"), "num": ("[{", "N"), "numrange": ("[{{", "NN"), "ang": ("[{", "A"),
}
SI_POWER = {"squared": "^2", "cubed": "^3", "square": "^2", "cubic": "^3"}
ACRO_USE = {  # command -> (form, plural, capitalised); form: s(hort), l(ong), f(ull), a(uto: full once)
    "ac": ("a", False, False), "Ac": ("a", False, True), "acp": ("a", True, False), "Acp": ("a", True, True),
    "acs": ("s", False, False), "acsp": ("s", True, False), "acl": ("l", False, False), "Acl": ("l", False, True),
    "aclp": ("l", True, False), "Aclp": ("l", True, True), "acf": ("f", False, False), "Acf": ("f", False, True),
    "acfp": ("f", True, False), "gls": ("a", False, False), "Gls": ("a", False, True),
    "glspl": ("a", True, False), "Glspl": ("a", True, True), "acrshort": ("s", False, False),
    "acrlong": ("l", False, False), "acrfull": ("f", False, False), "glsentryshort": ("s", False, False),
}

