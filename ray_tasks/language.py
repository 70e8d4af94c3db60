"""Language of a file from its name and extension, through pygments' lexer table.

Why pygments: it is a maintained registry of ~600 languages with their file-name
patterns, so no hand list is kept here. Lookup is by filename only (no content
guessing, which is slow and unstable); results are cached per name pattern.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from pathlib import PurePosixPath

from pygments.lexers import get_all_lexers

# Names The Stack v2 uses where pygments' differ, so thresholds keyed by language match.
_RENAMES = {"Python 2.x": "Python", "Python 3": "Python", "JSON5": "JSON", "Text only": "Text"}


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str], list[tuple[str, str]]]:
    """(exact filename -> lang, extension -> lang, remaining glob patterns)."""
    by_name: dict[str, str] = {}
    by_ext: dict[str, str] = {}
    globs: list[tuple[str, str]] = []
    # Sorted so that ties between lexers resolve the same way on every machine.
    for name, _aliases, patterns, _mimes in sorted(get_all_lexers(), key=lambda lx: lx[0]):
        lang = _RENAMES.get(name, name)
        for pat in patterns:
            if pat.startswith("*.") and not any(c in pat[2:] for c in "*?["):
                by_ext.setdefault(pat[1:].lower(), lang)
            elif not any(c in pat for c in "*?["):
                by_name.setdefault(pat, lang)
            else:
                globs.append((pat, lang))
    # pygments maps .txt to "Text only"; README/LICENSE-like names without extension stay unknown.
    by_ext[".py"] = "Python"
    by_ext[".pyi"] = "Python"
    by_ext[".txt"] = "Text"
    by_ext[".md"] = "Markdown"
    by_ext[".json"] = "JSON"
    by_ext[".h"] = "C"
    return by_name, by_ext, globs


@lru_cache(maxsize=65536)
def detect_language(path: str) -> str | None:
    """Language name for a repository path, or None when no lexer claims it."""
    name = PurePosixPath(path).name
    by_name, by_ext, globs = _tables()
    if name in by_name:
        return by_name[name]
    suffix = PurePosixPath(name).suffix.lower()
    if suffix and suffix in by_ext:
        return by_ext[suffix]
    for pat, lang in globs:
        if fnmatch.fnmatch(name, pat):
            return lang
    return None


def language_count() -> int:
    by_name, by_ext, globs = _tables()
    return len(set(by_name.values()) | set(by_ext.values()) | {lang for _, lang in globs})
