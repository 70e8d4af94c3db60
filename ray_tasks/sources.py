"""Where code comes from: readers that yield raw files, one repository at a time.

A reader yields ``RawFile`` records (bytes, not text): deciding what is
binary, undecodable or too large is ingest's job, so every skip is counted in
one place. Repository licenses are resolved here because only the reader knows
where a repository's metadata lives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Iterator

from ray_tasks.licenses import classify, is_license_file, licenses_from_metadata, licenses_from_text

SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "node_modules", ".tox", ".mypy_cache"}


@dataclass
class RawFile:
    repo_name: str
    path: str
    """Path inside the repository, '/'-separated."""
    data: bytes | None
    """None when the file was not read (too large or unreadable); ``error`` says why."""
    size: int
    error: str | None = None


@dataclass
class Repository:
    name: str
    source: str
    detected_licenses: list[str]
    license_type: str
    files: list[Path | str] = field(default_factory=list, repr=False)
    root: Path | None = None


def read_files(repo: Repository, max_file_bytes: int) -> Iterator[RawFile]:
    """Read a repository's files; oversized files are not read into memory."""
    for entry in repo.files:
        abs_path = Path(entry) if repo.root is None else repo.root / entry
        rel = str(entry).replace(os.sep, "/") if repo.root is not None else Path(entry).name
        try:
            size = abs_path.stat().st_size
            if size >= max_file_bytes:
                yield RawFile(repo.name, rel, None, size, error="too_large")
                continue
            yield RawFile(repo.name, rel, abs_path.read_bytes(), size)
        except OSError as exc:
            yield RawFile(repo.name, rel, None, 0, error=f"unreadable: {exc.strerror or exc}")


# --------------------------------------------------------------------------- python_env
def python_env_repositories(distributions: list[str], max_files: int | None) -> Iterator[Repository]:
    """Each installed distribution as a repository of its RECORD-listed files.

    Licenses come from the dist-info metadata, then from its license files.
    Files in ``*.dist-info``/``__pycache__`` are metadata, not source, and are left out.
    """
    wanted = {_norm(d) for d in distributions}
    seen: set[str] = set()
    dists = sorted(importlib_metadata.distributions(), key=lambda d: _norm(d.metadata["Name"] or ""))
    for dist in dists:
        name = _norm(dist.metadata["Name"] or "")
        if not name or name in seen or (wanted and name not in wanted):
            continue
        seen.add(name)
        detected = licenses_from_metadata(dist.metadata) or _dist_license_files(dist)
        base = Path(dist.locate_file(""))
        rels = sorted(
            str(f)
            for f in (dist.files or [])
            if not any(part.endswith(".dist-info") or part in SKIP_DIRS or part == ".." for part in f.parts)
        )
        if max_files is not None:
            rels = rels[:max_files]
        yield Repository(
            name=f"pypi/{name}",
            source="python_env",
            detected_licenses=sorted(detected),
            license_type=classify(detected),
            files=[Path(r) for r in rels],
            root=base,
        )
    missing = wanted - seen
    if missing:
        raise ValueError(f"ingest.sources: distributions not installed in this environment: {sorted(missing)}")


def _dist_license_files(dist) -> set[str]:
    found: set[str] = set()
    for f in dist.files or []:
        if any(p.endswith(".dist-info") for p in f.parts) and is_license_file(f.name):
            try:
                found |= licenses_from_text(Path(dist.locate_file(f)).read_text(errors="replace"))
            except OSError:
                continue
    return found


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# --------------------------------------------------------------------------- directory
def directory_repositories(root: str | Path, max_files: int | None) -> Iterator[Repository]:
    """Each sub-folder of ``root`` as a repository; licenses from its license-like files."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"ingest.sources: directory {root} does not exist")
    for repo_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_DIRS):
        rels = sorted(_walk(repo_dir))
        if max_files is not None:
            rels = rels[:max_files]
        detected: set[str] = set()
        for rel in rels:
            if "/" not in rel and is_license_file(rel) and not rel.lower().startswith("readme"):
                try:
                    detected |= licenses_from_text((repo_dir / rel).read_text(errors="replace"))
                except OSError:
                    pass
        yield Repository(
            name=repo_dir.name,
            source="directory",
            detected_licenses=sorted(detected),
            license_type=classify(detected),
            files=rels,
            root=repo_dir,
        )


def _walk(repo_dir: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(repo_dir):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for fn in filenames:
            full = Path(dirpath) / fn
            if full.is_symlink():
                continue
            yield full.relative_to(repo_dir).as_posix()


def repositories(sources: list[dict], workspace: Path = Path(".")) -> Iterator[Repository]:
    """Repositories of every configured source (``ingest.sources`` entries as dicts)."""
    for spec in sources:
        kind = spec["kind"]
        if kind == "python_env":
            yield from python_env_repositories(spec.get("distributions") or [], spec.get("max_files_per_repo"))
        elif kind == "directory":
            path = Path(spec["path"])
            yield from directory_repositories(path if path.is_absolute() else workspace / path, spec.get("max_files_per_repo"))
        else:
            raise ValueError(f"ingest.sources: unknown source kind {kind!r}")
