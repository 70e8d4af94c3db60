"""Where code comes from: readers that yield repositories of raw files.

Sources (``ingest.sources`` entries):
- ``python_env``: installed Python distributions, one repository each (the embedded default);
- ``directory``: a folder whose sub-folders are repositories;
- ``git``: git repositories by path or URL, shallow-cloned at their default branch;
- ``parquet`` / ``jsonl``: one row per file in The Stack v2's schema (``repo_name``,
  ``path``, ``content`` + its metadata columns), or any schema through a column mapping;
- ``stack_v2``: The Stack v2 as BigCode releases it, id files without content; the contents are
  fetched from Software Heritage's S3 bucket by the workers (``stack_v2.py``).

A reader yields ``Repository`` records cheaply, in the driver: names, paths and where
the bytes are, never the bytes themselves. Reading, decoding and license detection
happen later, per group of repositories, wherever the executor runs them
(``stage.ingest_group``): ``Repository.licenses`` is detected on first use from what
the reader recorded (``license_files`` of a dist-info, the license-like paths of a
folder or of a table's rows), because only the reader knows where a repository's
license metadata and license files live. Deciding what is binary, undecodable or
too large is ingest's job, so every skip is counted in one place.

Parquet sources are listed from their ``repo_name`` column one row group at a time
and read by row group in the workers (``load_rows``); a JSONL file has no row groups
and is read whole when listed (convert big JSONL corpora to Parquet). Table files may be local
or URIs (``s3://bucket/prefix/*.parquet``, through ``ray_tasks.datasets.resolve``).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import pyarrow as pa

from ray_tasks.datasets import open_part, resolve
from ray_tasks.ingest.params import DirectorySource, GitSource, PythonEnvSource, Source, StackV2Source
from ray_tasks.ingest.licenses import (
    RepoLicenses, is_license_file, licenses_from_metadata, licenses_from_text, scan_repository, spdx_from_expression,
)

if TYPE_CHECKING:
    from ray_tasks.ingest.stack_v2 import BlobStore

SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "node_modules", ".tox", ".mypy_cache"}

# The Stack v2 per-file metadata a table source may carry, honoured when present.
STACK_META_COLUMNS = ("star_events_count", "fork_events_count", "revision_id", "revision_date", "visit_date",
                      "gha_license_id", "language", "src_encoding", "detected_licenses", "license_type")


@dataclass
class RawFile:
    repo_name: str
    path: str
    """Path inside the repository, '/'-separated."""
    data: bytes | None
    """None when the file was not read (too large or unreadable); ``error`` says why."""
    size: int
    error: str | None = None
    text: str | None = None
    """Already-decoded content (table sources); ``data`` is then None."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Per-file metadata from the source (language, src_encoding, licenses...)."""


@dataclass
class RowGroups:
    """Where a table repository's rows are: row groups of Parquet files, read by ``load_rows``."""

    fmt: str
    columns: dict[str, str]
    max_files: int | None
    parts: list[tuple[str, int]]
    """(Parquet file, row group index) in reading order."""
    blobs: "BlobStore | None" = None
    """stack_v2: where the rows' contents are fetched from (the rows are ids)."""


@dataclass
class Repository:
    name: str
    source: str
    known_licenses: RepoLicenses | None = None
    """Licenses when already known; None: detected on first use of ``licenses`` (in a worker)."""
    files: list[str] = field(default_factory=list, repr=False)
    """Paths inside the repository ('/'-separated), read from ``root``; or the rows' paths."""
    root: Path | None = None
    rows: list[RawFile] | None = field(default=None, repr=False)
    """Files already in memory (table sources), or None until ``load_rows`` reads ``row_groups``."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Repository metadata: stars, forks, revision... (Stack v2 column names)."""
    declared: list[str] | None = None
    """The source's declared license ids (PyPI metadata, ``gha_license_id``)."""
    license_files: dict[str, Path] | None = None
    """python_env: dist-info license files (RECORD path -> installed path), scanned on first use."""
    row_groups: RowGroups | None = None
    size_hint: int = 0
    """Bytes this repository will read (an estimate from the listing), for batching and progress."""
    blobs: "BlobStore | None" = field(default=None, repr=False)
    """stack_v2: the rows have no content yet; ``read_files`` fetches it from this store."""

    @property
    def licenses(self) -> RepoLicenses:
        if self.known_licenses is None:
            self.known_licenses = detect_licenses(self)
        return self.known_licenses

    @property
    def license_type(self) -> str:
        return self.licenses.repo_type

    @property
    def detected_licenses(self) -> list[str]:
        return self.licenses.repo_licenses


def read_files(repo: Repository, max_file_bytes: int) -> Iterator[RawFile]:
    """A repository's files; oversized files are not read into memory."""
    if repo.rows is not None:
        rows = _capped(repo.rows, max_file_bytes)
        if repo.blobs is not None:  # stack_v2: contents fetched now, in the worker, never for oversized rows
            rows = repo.blobs.fetch(rows, max_file_bytes)
        yield from rows
        return
    for rel in repo.files:
        abs_path = repo.root / rel
        try:
            size = abs_path.stat().st_size
            if size >= max_file_bytes:
                yield RawFile(repo.name, rel, None, size, error="too_large")
                continue
            yield RawFile(repo.name, rel, abs_path.read_bytes(), size)
        except OSError as exc:
            yield RawFile(repo.name, rel, None, 0, error=f"unreadable: {exc.strerror or exc}")


def _capped(rows: list[RawFile], max_file_bytes: int) -> list[RawFile]:
    """Rows at or over the size cap as ``too_large`` (their content, if any, is not looked at)."""
    return [RawFile(row.repo_name, row.path, None, row.size, error="too_large", meta=row.meta)
            if row.error is None and row.size >= max_file_bytes else row for row in rows]


def _read_text(root: Path):
    def read(rel: str) -> str | None:
        try:
            return (root / rel).read_text(errors="replace")
        except OSError:
            return None

    return read


# --------------------------------------------------------------------------- python_env
def python_env_repositories(distributions: list[str], max_files: int | None) -> Iterator[Repository]:
    """Each installed distribution as a repository of its RECORD-listed files.

    The declared license is the dist-info metadata's (like GitHub's repo license in
    The Stack v2); license files in the dist-info are scanned with ScanCode and
    apply to the whole distribution. Files in ``*.dist-info``/``__pycache__`` are
    metadata, not source, and are left out.
    """
    wanted = {_norm(d) for d in distributions}
    seen: set[str] = set()
    dists = sorted(importlib_metadata.distributions(), key=lambda d: _norm(d.metadata["Name"] or ""))
    for dist in dists:
        name = _norm(dist.metadata["Name"] or "")
        if not name or name in seen or (wanted and name not in wanted):
            continue
        seen.add(name)
        base = Path(dist.locate_file(""))
        rels = sorted(
            f.as_posix()
            for f in (dist.files or [])
            if not any(part.endswith(".dist-info") or part in SKIP_DIRS or part == ".." for part in f.parts)
        )
        if max_files is not None:
            rels = rels[:max_files]
        sizes = {f.as_posix(): f.size for f in dist.files or []}
        yield Repository(name=f"pypi/{name}", source="python_env", files=rels, root=base,
                         meta={"revision_id": dist.version}, declared=sorted(licenses_from_metadata(dist.metadata)),
                         license_files=dist_license_paths(dist), size_hint=sum(int(sizes.get(r) or 0) for r in rels))
    missing = wanted - seen
    if missing:
        raise ValueError(f"ingest.sources: distributions not installed in this environment: {sorted(missing)}")


def dist_license_paths(dist) -> dict[str, Path]:
    """The license-like files of a distribution's dist-info (RECORD path -> installed path)."""
    return {f.as_posix(): Path(dist.locate_file(f)) for f in dist.files or []
            if any(p.endswith(".dist-info") for p in f.parts) and is_license_file(f.name)}


def dist_license_files(dist) -> dict[str, list[str]]:
    """ScanCode's findings for each license-like file of a distribution's dist-info."""
    return scan_license_paths(dist_license_paths(dist))


def scan_license_paths(paths: dict[str, Path]) -> dict[str, list[str]]:
    """License ids found in each file (files that cannot be read or hold none are left out)."""
    found: dict[str, list[str]] = {}
    for rel, path in paths.items():
        try:
            ids = sorted(licenses_from_text(path.read_text(errors="replace")))
        except OSError:
            continue
        if ids:
            found[rel] = ids
    return found


def dist_licenses(declared: list[str], license_files: dict[str, Path]) -> RepoLicenses:
    """A distribution's licenses: declared by its metadata, found in its dist-info license files,
    each applying to the installed directory it came from (``license_dir_in_dist``)."""
    licenses = RepoLicenses(declared=list(declared))
    licenses.files = scan_license_paths(license_files)
    for lic_path, ids in licenses.files.items():
        directory = license_dir_in_dist(lic_path)
        licenses.by_dir[directory] = sorted(set(licenses.by_dir.get(directory, [])) | set(ids))
    return licenses


def license_dir_in_dist(path: str) -> str:
    """The installed directory a dist-info license file applies to.

    ``pip-26.dist-info/licenses/src/pip/_vendor/idna/LICENSE.md`` -> ``pip/_vendor/idna/``
    (PEP 639 keeps the source tree's layout); ``x/_vendor/more_itertools-10.dist-info/LICENSE``
    (a vendored distribution) -> ``x/_vendor/more_itertools/``; the top-level license -> ``''``.
    """
    parts = path.split("/")
    idx = next(i for i, p in enumerate(parts) if p.endswith(".dist-info"))
    if idx > 0:  # a vendored distribution's own dist-info
        package = parts[idx].rsplit("-", 1)[0].split("-")[0].replace(".", "/")
        return "/".join(parts[:idx] + [package]) + "/"
    rest = parts[idx + 1:-1]
    if rest[:1] == ["licenses"]:
        rest = rest[1:]
    if rest[:1] == ["src"]:
        rest = rest[1:]
    return "/".join(rest) + "/" if rest else ""


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# --------------------------------------------------------------------------- directory
def directory_repositories(root: str | Path, max_files: int | None) -> Iterator[Repository]:
    """Each sub-folder of ``root`` as a repository; licenses from its license-like files."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"ingest.sources: directory {root} does not exist")
    for repo_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_DIRS):
        yield folder_repository(repo_dir, repo_dir.name, "directory", max_files)


def folder_repository(repo_dir: Path, name: str, source: str, max_files: int | None,
                      rels: list[str] | None = None, meta: dict | None = None) -> Repository:
    rels = sorted(rels if rels is not None else walk(repo_dir))
    if max_files is not None:
        rels = rels[:max_files]
    return Repository(name=name, source=source, files=rels, root=repo_dir, meta=meta or {},
                      size_hint=_sizes(repo_dir, rels))


def _sizes(root: Path, rels: list[str]) -> int:
    total = 0
    for rel in rels:
        try:
            total += (root / rel).stat().st_size
        except OSError:
            pass
    return total


def walk(repo_dir: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(repo_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fn in filenames:
            full = Path(dirpath) / fn
            if full.is_symlink():
                continue
            yield full.relative_to(repo_dir).as_posix()


# --------------------------------------------------------------------------- git
def git_repositories(urls: list[str], cache_dir: Path, branch: str | None, max_files: int | None) -> Iterator[Repository]:
    """Shallow clones (depth 1, default branch unless ``branch``) of each URL or path.

    The git CLI rather than a Python binding: shallow clone over every transport
    git supports is exactly what it does best. Clones are cached under
    ``cache_dir`` and refreshed (fetch + reset) on the next run. Only tracked
    files are read (``git ls-files``): build outputs and ignored files are not code
    the repository publishes.
    """
    for url in urls:
        name = repo_name_from_url(url)
        dest = cache_dir / re.sub(r"[^\w.-]+", "__", name)
        revision = shallow_clone(url, dest, branch)
        rels = _git(["ls-files", "-z"], dest).split("\0")
        rels = [r for r in rels if r and (dest / r).is_file() and not (dest / r).is_symlink()]
        yield folder_repository(dest, name, "git", max_files, rels=rels, meta={"revision_id": revision})


def repo_name_from_url(url: str) -> str:
    """``https://github.com/owner/name.git`` -> ``owner/name``; a local path -> its folder name."""
    cleaned = url.rstrip("/").removesuffix(".git")
    m = re.match(r"^(?:[a-z+]+://[^/]+/|[^@/]+@[^:]+:)(.+)$", cleaned)
    if m:
        parts = m.group(1).split("/")
        return "/".join(parts[-2:]) if len(parts) >= 2 else parts[-1]
    return Path(cleaned).name


def shallow_clone(url: str, dest: Path, branch: str | None) -> str:
    """Clone or refresh ``dest``; returns the checked-out commit id."""
    local = Path(url).expanduser()
    remote = local.resolve().as_uri() if local.exists() else url  # --depth needs file:// for local paths
    try:
        if (dest / ".git").is_dir():
            ref = branch or "HEAD"
            _git(["fetch", "--depth", "1", "origin", ref], dest)
            _git(["reset", "--hard", "FETCH_HEAD"], dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".partial")
            if tmp.exists():
                subprocess.run(["rm", "-rf", str(tmp)], check=True)
            cmd = ["clone", "--depth", "1", "--single-branch", "--no-tags", "--quiet"]
            cmd += ["--branch", branch] if branch else []
            _git(cmd + [remote, str(tmp)], None)
            tmp.rename(dest)  # a half-finished clone never looks complete
    except RuntimeError as exc:
        raise ValueError(f"ingest.sources: cannot clone git repository {url}: {exc}") from None
    return _git(["rev-parse", "HEAD"], dest).strip()


def _git(args: list[str], cwd: Path | None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {args[0]} failed")
    return proc.stdout


# --------------------------------------------------------------------------- parquet / jsonl
REQUIRED_TABLE_COLUMNS = ("repo_name", "path", "content")


def table_files(path: str | Path, fmt: str) -> list[Path] | list[str]:
    """The files a table source names: one file, a folder (recursively) or a glob; local paths, or
    URIs for a URI (``s3://bucket/ids/`` or ``s3://bucket/ids/*.parquet``)."""
    suffixes = {"parquet": (".parquet",), "jsonl": (".jsonl", ".json", ".jsonl.gz", ".json.gz")}[fmt]
    if "://" in str(path):
        return _uri_table_files(str(path), fmt, suffixes)
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(suffixes))
    else:
        found = sorted(Path(g) for g in glob.glob(str(p), recursive=True))
    if not found:
        raise ValueError(f"ingest.sources: no {fmt} files at {path}")
    return found


def _uri_table_files(uri: str, fmt: str, suffixes: tuple[str, ...]) -> list[str]:
    """``table_files`` for a URI: listed through pyarrow.fs; a wildcard is matched (fnmatch) below
    the last folder without one."""
    import fnmatch

    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0]
    fs, path = resolve(uri)
    if any(c in path for c in "*?["):
        parts = path.split("/")
        fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
        infos = fs.get_file_info(pafs.FileSelector("/".join(parts[:fixed]), recursive=True, allow_not_found=True))
        found = [i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, path)]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            found = [path]
        else:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
            found = [i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffixes)
                     and not i.base_name.startswith((".", "_"))]
    if not found:
        raise ValueError(f"ingest.sources: no {fmt} files at {uri}")
    return [f"{scheme}://{f}" for f in sorted(found)]


def read_table_file(path: str | Path, fmt: str) -> pa.Table:
    """A whole JSONL file (JSONL has no row groups; Parquet is read by row group instead)."""
    import pyarrow.json as pj

    options = pj.ReadOptions(block_size=1 << 24)
    if "://" in str(path):
        fs, p = resolve(path)
        with fs.open_input_stream(p, compression="detect") as fh:
            return pj.read_json(fh, read_options=options)
    return pj.read_json(path, read_options=options)


def table_repositories(path: str | Path, fmt: str, columns: dict[str, str], max_files: int | None,
                       skipped: list[RawFile]) -> Iterator[Repository]:
    """Repositories from Parquet/JSONL rows (one row per file), grouped by ``repo_name`` in order of
    first appearance, each repository's rows in path order.

    ``columns`` maps StarFlow's names to the source's (``{"content": "text"}``).
    A file that cannot be read is a counted skip in ``skipped`` (named, with the
    error); a readable file without the required columns is a configuration
    error and stops the stage with the columns it does have.
    Licenses: per-file ``detected_licenses``/``license_type`` columns are
    honoured when present; otherwise ``gha_license_id`` is the declared license
    and license-like rows of the repository are scanned.
    Parquet: only the ``repo_name`` column is read here, a row group at a time; the rows
    themselves are read by row group where the repository is ingested (``load_rows``).
    """
    if fmt == "parquet":
        yield from parquet_repositories(table_files(path, fmt), columns, max_files, skipped)
        return
    by_repo: dict[str, list[RawFile]] = {}
    for f in table_files(path, fmt):
        try:
            table = read_table_file(f, fmt)
        except (OSError, pa.ArrowException) as exc:
            skipped.append(_unreadable(f, fmt, exc))
            continue
        for raw in _raw_rows(_map_columns(table, columns, f)):
            by_repo.setdefault(raw.repo_name, []).append(raw)
    for repo, rows in by_repo.items():
        yield table_repository(repo, fmt, rows, max_files)


def _unreadable(f: str | Path, fmt: str, exc: Exception) -> RawFile:
    return RawFile(f"<{fmt}>", str(f), None, 0, error=f"unreadable_{fmt}: {str(exc)[:300]}")


def parquet_repositories(files: Sequence[str | Path], columns: dict[str, str], max_files: int | None,
                         skipped: list[RawFile], kind: str = "parquet",
                         check: Callable[[Any, str | Path], None] | None = None,
                         row_sizes: Callable[[Any, int], list[float]] | None = None,
                         blobs: "BlobStore | None" = None) -> Iterator[Repository]:
    """Repositories of Parquet files, listed from the ``repo_name`` column one row group at a time.

    ``check(parquet_file, path)`` validates a file's columns (default: ``repo_name, path,
    content``); ``row_sizes(parquet_file, row_group)`` gives the bytes each row will read (default:
    its share of the row group's bytes; stack_v2: the contents' ``length_bytes``)."""
    parts: dict[str, list[tuple[str, int]]] = {}
    sizes: dict[str, float] = {}
    repo_column = columns.get("repo_name", "repo_name")
    for f in files:
        try:
            pf = open_part(f)
        except (OSError, pa.ArrowException) as exc:
            skipped.append(_unreadable(f, "parquet", exc))
            continue
        if check is not None:
            check(pf, f)
        else:
            _check_columns(pf.schema_arrow.names, columns, f)
        for rg in range(pf.metadata.num_row_groups):
            names = pf.read_row_group(rg, columns=[repo_column]).column(0).to_pylist()
            if row_sizes is not None:
                per_row = row_sizes(pf, rg)
            else:
                per_row = [pf.metadata.row_group(rg).total_byte_size / max(len(names), 1)] * len(names)
            for name, size in zip(names, per_row):
                name = name or "<unknown>"
                where = parts.setdefault(name, [])
                if not where or where[-1] != (str(f), rg):
                    where.append((str(f), rg))
                sizes[name] = sizes.get(name, 0) + size
    for name, where in parts.items():
        yield Repository(name=name, source=kind, row_groups=RowGroups(kind, columns, max_files, where, blobs),
                         size_hint=int(sizes[name]))


def load_rows(repos: list[Repository], max_file_bytes: int | None = None,
              opt_out: Sequence[str] = ()) -> list[Repository]:
    """The same repositories with their rows in memory: each row group a Parquet repository names is
    read once for the whole group of repositories, then dropped.

    stack_v2: given the stage's ``max_file_bytes`` (and ``opt_out``), the group's contents are
    fetched here, all at once: ``concurrency`` requests in flight across its repositories, where
    ``read_files`` alone fetches one repository at a time (few requests for small repositories).
    Oversized files and opted-out repositories are still never fetched."""
    import pyarrow.compute as pc

    from ray_tasks.ingest import stack_v2  # imported here: stack_v2 builds on this module

    cache: dict[tuple[str, int], pa.Table] = {}
    opened: dict[str, Any] = {}
    out = []
    for repo in repos:
        spec = repo.row_groups
        if spec is None or repo.rows is not None:
            out.append(repo)
            continue
        rows: list[RawFile] = []
        for f, rg in spec.parts:
            if (f, rg) not in cache:
                pf = opened.get(f) or opened.setdefault(f, open_part(f))
                if spec.blobs is not None:
                    cache[(f, rg)] = stack_v2.read_ids(pf, rg, spec.columns, f)
                else:
                    cache[(f, rg)] = _map_columns(pf.read_row_group(rg), spec.columns, f)
            table = cache[(f, rg)]
            names = pc.fill_null(table.column("repo_name"), "<unknown>")
            mine = table.filter(pc.equal(names, repo.name))
            rows += stack_v2.id_rows(mine) if spec.blobs is not None else _raw_rows(mine)
        if spec.blobs is not None:
            loaded = stack_v2.repository(repo.name, rows, spec.max_files, spec.blobs)
        else:
            loaded = table_repository(repo.name, spec.fmt, rows, spec.max_files)
        loaded.size_hint = repo.size_hint
        out.append(loaded)
    if max_file_bytes is not None:
        _fetch_group(out, max_file_bytes, opt_out)
    return out


def _fetch_group(repos: list[Repository], max_file_bytes: int, opt_out: Sequence[str]) -> None:
    """Fetch the contents of a group's stack_v2 repositories in one pool (see ``load_rows``)."""
    from ray_tasks.ingest.stage import opted_out  # the stage's rule, defined once; imported at call time

    wanted = [r for r in repos if r.blobs is not None and r.rows is not None and not opted_out(r.name, opt_out)]
    for store in dict.fromkeys(r.blobs for r in wanted):
        members = [r for r in wanted if r.blobs == store]
        rows = _capped([row for r in members for row in r.rows], max_file_bytes)
        fetched = iter(store.fetch(rows, max_file_bytes))
        for repo in members:
            repo.rows = [next(fetched) for _ in repo.rows]


def _raw_rows(table: pa.Table) -> Iterator[RawFile]:
    for row in table.to_pylist():
        text = row["content"]
        repo = row["repo_name"] or "<unknown>"
        meta = {k: row[k] for k in STACK_META_COLUMNS if row.get(k) is not None}
        if text is None:
            yield RawFile(repo, row["path"], None, 0, error="no_content", meta=meta)
        else:
            size = row.get("length_bytes") or len(text.encode("utf-8", "surrogatepass"))
            yield RawFile(repo, row["path"], None, int(size), text=text, meta=meta)


def table_repository(name: str, fmt: str, rows: list[RawFile], max_files: int | None) -> Repository:
    meta: dict[str, Any] = {}
    for row in rows:  # the first value each repository-level column has
        for k in ("star_events_count", "fork_events_count", "revision_id", "revision_date", "visit_date", "gha_license_id"):
            if k in row.meta:
                meta.setdefault(k, row.meta[k])
    rows = sorted(rows, key=lambda r: r.path)[:max_files]  # max_files None: all
    gha = meta.get("gha_license_id")
    return Repository(name=name, source=fmt, files=[r.path for r in rows], rows=rows, meta=meta,
                      declared=sorted(spdx_from_expression(gha)) if gha else None,
                      size_hint=sum(r.size for r in rows))


def detect_licenses(repo: Repository) -> RepoLicenses:
    """A repository's licenses from what its reader recorded (run where the repository is ingested)."""
    if repo.license_files is not None:
        return dist_licenses(repo.declared or [], repo.license_files)
    if repo.rows is not None:
        texts = {r.path: r.text for r in repo.rows}
        return scan_repository(list(texts), texts.get, declared=repo.declared)
    if repo.row_groups is not None:
        return load_rows([repo])[0].licenses
    return scan_repository(repo.files, _read_text(repo.root), declared=repo.declared)


def _check_columns(names: list[str], columns: dict[str, str], path: str | Path,
                   required: Sequence[str] = REQUIRED_TABLE_COLUMNS) -> None:
    renames = {theirs: ours for ours, theirs in columns.items()}
    missing = [c for c in required if c not in [renames.get(n, n) for n in names]]
    if missing:
        raise ValueError(
            f"ingest.sources: {path} lacks column(s) {missing}; it has {names}. "
            f"Map yours with `columns: {{{missing[-1]}: <your column>, ...}}`."
        )


def _map_columns(table: pa.Table, columns: dict[str, str], path: str | Path,
                 required: Sequence[str] = REQUIRED_TABLE_COLUMNS) -> pa.Table:
    _check_columns(table.column_names, columns, path, required)
    renames = {theirs: ours for ours, theirs in columns.items()}
    table = table.rename_columns([renames.get(c, c) for c in table.column_names])
    for col in table.column_names:  # timestamps -> ISO strings, so rows compare across sources
        if pa.types.is_timestamp(table.schema.field(col).type) or pa.types.is_date(table.schema.field(col).type):
            table = table.set_column(table.column_names.index(col), col, table.column(col).cast(pa.string()))
    return table


# --------------------------------------------------------------------------- all sources
@dataclass
class SourceSkips:
    """Files a source could not even hand over (a broken Parquet file...): counted by ingest."""

    files: list[RawFile] = field(default_factory=list)


def repositories(sources: Sequence[Source], workspace: Path = Path("."), skips: SourceSkips | None = None) -> Iterator[Repository]:
    """Repositories of every configured source (``ingest.sources``), in order; relative paths are
    taken from ``workspace``; files a table source cannot read go to ``skips``."""
    skips = skips if skips is not None else SourceSkips()
    for spec in sources:
        cap = spec.max_files_per_repo
        if isinstance(spec, PythonEnvSource):
            yield from python_env_repositories(spec.distributions, cap)
        elif isinstance(spec, DirectorySource):
            yield from directory_repositories(_resolve(spec.path, workspace), cap)
        elif isinstance(spec, GitSource):
            urls = [u if "://" in u or "@" in u else str(_resolve(u, workspace)) for u in spec.urls]
            yield from git_repositories(urls, _resolve(spec.cache_dir, workspace), spec.branch, cap)
        elif isinstance(spec, StackV2Source):
            from ray_tasks.ingest.stack_v2 import stack_v2_repositories  # builds on this module

            cache = Path(_resolve(spec.cache_dir, workspace)).absolute() if spec.cache_dir else None
            yield from stack_v2_repositories(spec, _resolve(spec.path, workspace), cache, skips.files)
        else:
            yield from table_repositories(_resolve(spec.path, workspace), spec.kind, spec.columns, cap, skips.files)


def _resolve(path: str, workspace: Path) -> Path | str:
    """A local path from the workspace; a URI (``s3://...``) as it is."""
    if "://" in path:
        return path
    p = Path(path).expanduser()
    return p if p.is_absolute() else workspace / p

