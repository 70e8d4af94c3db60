"""Language of a file from its name, extension and content, through pygments' lexer table.

Why pygments: it is a maintained registry of ~600 languages with their
file-name patterns and aliases, so no hand list of languages is kept here.
The Stack v2 used go-enry (linguist), which needs a Go build; pygments covers
the same job from PyPI. Order of evidence, as in linguist:
1. exact file names (``Makefile``, ``Dockerfile``) and unambiguous extensions;
2. for an extension several lexers claim (``.h``, ``.m``, ``.pl``): a preferred
   default, refined by content (pygments' own ``analyse_text`` scores);
3. no match by name: the shebang interpreter (``#!/usr/bin/env python3``) or an
   editor modeline (``vim: ft=ruby``, ``-*- mode: lisp -*-``), looked up among
   the lexers' aliases.
Names are mapped to linguist's where they differ, so The Stack v2's per-language
thresholds (keyed by linguist names) apply.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from pathlib import PurePosixPath

from pygments.lexers import get_all_lexers

# pygments name -> linguist name, where they differ for languages The Stack v2's rules name.
RENAMES = {
    "Python 2.x": "Python", "Python 3": "Python", "JSON5": "JSON", "Text only": "Text", "Groff": "Roff",
    "Bash": "Shell", "S": "R", "Graphviz": "Graphviz (DOT)", "verilog": "Verilog", "GAS": "Unix Assembly",
    "Objective-C++": "Objective-C++", "Transact-SQL": "TSQL", "Coq": "Coq", "aspx-cs": "ASP.NET",
    "aspx-vb": "ASP.NET", "systemverilog": "SystemVerilog", "vhdl": "VHDL", "Docker": "Dockerfile",
    "Nginx configuration file": "Nginx", "Protocol Buffer": "Protocol Buffer", "Cython": "Cython",
}

# Extensions several lexers claim: the common meaning wins unless content says otherwise.
PREFERRED = {
    ".c": "C", ".h": "C", ".sql": "SQL", ".pl": "Perl", ".pm": "Perl", ".t": "Perl", ".m": "Objective-C",
    ".s": "Unix Assembly", ".r": "R", ".asm": "NASM", ".fs": "F#", ".v": "Verilog", ".inc": "PHP",
    ".xsl": "XSLT", ".xslt": "XSLT", ".cl": "Common Lisp", ".sc": "Scala", ".hh": "C++", ".mm": "Objective-C++",
    ".as": "ActionScript 3", ".bas": "VB.net", ".pro": "Prolog", ".p": "OpenEdge ABL", ".lean": "Lean4",
    ".ttl": "Turtle", ".toc": "TeX", ".feature": "Gherkin", ".gd": "GDScript",
}

# Shebang interpreters whose names are not lexer aliases.
INTERPRETERS = {"node": "JavaScript", "nodejs": "JavaScript", "deno": "TypeScript", "sh": "Shell", "zsh": "Shell",
                "ksh": "Shell", "dash": "Shell", "rscript": "R", "pwsh": "PowerShell", "php-cgi": "PHP",
                "runghc": "Haskell", "runhaskell": "Haskell", "escript": "Erlang", "osascript": "AppleScript",
                "make": "Makefile", "wish": "Tcl", "tclsh": "Tcl", "perl6": "Raku", "raku": "Raku"}

_SHEBANG = re.compile(r"^#!\s*(\S+)(?:\s+(\S+))?")
_VIM = re.compile(r"(?:vim?|ex):.*?\b(?:ft|filetype|syntax)\s*=\s*([\w+#-]+)", re.I)
_EMACS = re.compile(r"-\*-.*?(?:mode:\s*)?([\w+#-]+)\s*(?:;.*)?-\*-", re.I)


def linguist_name(pygments_name: str) -> str:
    """The language's name as linguist (and so The Stack v2's rules) spells it."""
    return RENAMES.get(pygments_name, pygments_name)


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str], list[tuple[str, str]], dict[str, str], dict[str, set[str]]]:
    """(exact filename -> lang, unambiguous ext -> lang, glob patterns, alias -> lang, ambiguous ext -> langs)."""
    by_name: dict[str, str] = {}
    claims: dict[str, set[str]] = {}
    globs: list[tuple[str, str]] = []
    aliases: dict[str, str] = {}
    # Sorted so that ties resolve the same way on every machine.
    for name, lexer_aliases, patterns, _mimes in sorted(get_all_lexers(), key=lambda lx: lx[0]):
        lang = linguist_name(name)
        for alias in lexer_aliases:
            aliases.setdefault(alias.lower(), lang)
        for pat in patterns:
            if pat.startswith("*.") and not any(c in pat[2:] for c in "*?["):
                claims.setdefault(pat[1:].lower(), set()).add(lang)
            elif not any(c in pat for c in "*?["):
                by_name.setdefault(pat, lang)
            else:
                globs.append((pat, lang))
    by_ext = {ext: next(iter(langs)) for ext, langs in claims.items() if len(langs) == 1}
    ambiguous = {ext: langs for ext, langs in claims.items() if len(langs) > 1}
    for ext, lang in PREFERRED.items():
        ambiguous.pop(ext, None)
        by_ext[ext] = lang
    by_ext.update({".txt": "Text", ".md": "Markdown", ".json": "JSON", ".py": "Python", ".pyi": "Python"})
    aliases.update({k: v for k, v in INTERPRETERS.items()})
    return by_name, by_ext, globs, aliases, ambiguous


def detect_language(path: str, content: str | None = None) -> str | None:
    """Language name for a repository path (and, when given, its content), or None."""
    by_name_lang = _by_name(path)
    if by_name_lang is not None:
        return _refine(path, by_name_lang, content) if content else by_name_lang
    if content:
        return from_content(path, content)
    return None


@lru_cache(maxsize=65536)
def _by_name(path: str) -> str | None:
    name = PurePosixPath(path).name
    by_name, by_ext, globs, _, ambiguous = _tables()
    if name in by_name:
        return by_name[name]
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in by_ext:
        return by_ext[suffix]
    if suffix in ambiguous:
        return sorted(ambiguous[suffix])[0]
    for pat, lang in globs:
        if fnmatch.fnmatch(name, pat):
            return lang
    return None


def _refine(path: str, lang: str, content: str) -> str:
    """Content evidence for the one common ambiguity that matters: C/C++/Objective-C headers."""
    if lang == "C" and path.lower().endswith(".h"):
        head = content[:20_000]
        if re.search(r"^\s*@(interface|implementation|protocol)\b|^\s*#import\b", head, re.M):
            return "Objective-C"
        if re.search(r"^\s*(class|namespace|template\s*<)|\bstd::|^\s*(public|private|protected):", head, re.M):
            return "C++"
    return lang


def from_content(path: str, content: str) -> str | None:
    """Language from a shebang or an editor modeline (first or last lines), via lexer aliases."""
    _, _, _, aliases, _ = _tables()
    first = content[:500].split("\n", 1)[0]
    m = _SHEBANG.match(first)
    if m:
        interpreter = m.group(1).rsplit("/", 1)[-1]
        if interpreter == "env" and m.group(2):
            interpreter = m.group(2)
        base = re.sub(r"[\d.]+$", "", interpreter.lower())
        for key in (interpreter.lower(), base):
            if key in aliases:
                return aliases[key]
    lines = content[:2000].split("\n")[:5] + content[-2000:].split("\n")[-5:]
    for line in lines:
        for pattern in (_VIM, _EMACS):
            mm = pattern.search(line)
            if mm and mm.group(1).lower() in aliases:
                return aliases[mm.group(1).lower()]
    return None


def supported_languages() -> list[str]:
    """Every language reachable by file name, extension, shebang or modeline."""
    by_name, by_ext, globs, aliases, ambiguous = _tables()
    langs = set(by_name.values()) | set(by_ext.values()) | {lang for _, lang in globs} | set(aliases.values())
    langs |= {lang for options in ambiguous.values() for lang in options}
    return sorted(langs)
