"""Cheap fingerprints of ingest's sources: what makes a grown or changed source stale, and only that.

DVC decides staleness by hashing a stage's deps, and a source is not a file in the workspace
(a folder elsewhere, a git remote, Parquet on S3), so ingest cannot depend on it directly. The
``sources`` stage (``flows/sources.py``, ``always_changed`` in dvc.yaml) writes this module's
fingerprint of every ``ingest.sources`` entry to ``data/sources.json``, and ingest depends on that
file: DVC re-runs the check every time (seconds) and ingest only when the JSON changed.

What each kind's fingerprint looks at, without reading any file's content:

- ``directory``: every file ingest would read (the sub-folders' files, ``SKIP_DIRS`` left out,
  symlinks skipped), as relative path, size and mtime (ns; for a file git tracks unmodified, its
  blob id, so that a checkout is no change), hashed in sorted order;
- ``git``: the remote head commit (``git ls-remote URL HEAD``, or the ``branch``), for URLs and
  local paths alike: a new upstream commit changes it, a fetch is never needed;
- ``parquet`` / ``jsonl`` (and any kind with a ``path`` of table files, such as ``stack_v2``'s id
  files): the file list with sizes and mtimes, local or any URI pyarrow.fs knows (``s3://``);
- ``python_env``: the distributions' names and versions.

The JSON is deterministic (sorted keys, no timestamps of its own): an unchanged source gives
byte-identical output, which is what keeps DVC from re-running ingest. A changed mtime with
unchanged content still counts as a change: ingest then re-runs and writes the same output, and
DVC stops there (downstream stages see an unchanged ``data/ingest``).

    from ray_tasks.ingest.fingerprint import fingerprint_sources, changed_sources
    now = fingerprint_sources(params.ingest.sources, workspace=Path("."))
    changed_sources(before, now)   # ["git /srv/repo.git: 1a2b3c4 -> 5d6e7f8", ...]
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

from ray_tasks.ingest.params import DirectorySource, GitSource, PythonEnvSource
from ray_tasks.datasets import resolve
from ray_tasks.ingest.sources import SKIP_DIRS, table_files
from ray_tasks.ingest.sources import _norm  # the name normalisation python_env_repositories matches with

FORMAT = 1
"""Version of the fingerprint layout: a new layout makes every source look changed once."""
GIT_TIMEOUT_S = 60.0
"""How long ``git ls-remote`` may take before the check fails (a hung remote must not hang a schedule)."""


def fingerprint_sources(sources: Sequence[Any], workspace: Path = Path(".")) -> dict[str, Any]:
    """The fingerprint of every source, in order, with one digest over them all."""
    entries = [fingerprint_source(spec, workspace) for spec in sources]
    return {"format": FORMAT, "digest": _digest(entries), "sources": entries}


def fingerprint_source(spec: Any, workspace: Path = Path(".")) -> dict[str, Any]:
    """One source's entry: its spec (as params.yaml gives it), what was observed, and a digest of both."""
    if isinstance(spec, PythonEnvSource):
        state = python_env_state(spec.distributions)
    elif isinstance(spec, DirectorySource):
        state = directory_state(_resolve(spec.path, workspace))
    elif isinstance(spec, GitSource):
        state = {"heads": {url: remote_head(_git_remote(url, workspace), spec.branch) for url in spec.urls}}
    elif isinstance(getattr(spec, "path", None), str):  # parquet, jsonl, stack_v2's id files...
        state = table_state(_resolve_uri(spec.path, workspace), spec.kind)
    else:
        raise ValueError(f"ingest.sources: no fingerprint for a source of kind {getattr(spec, 'kind', spec)!r}")
    entry = {"kind": spec.kind, "spec": spec.model_dump(mode="json"), "state": state}
    return {**entry, "digest": _digest(entry)}


def changed_sources(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, one line per source (empty: nothing changed)."""
    if before is None or before.get("format") != now.get("format"):
        return [f"{label(e)}: not fingerprinted before" for e in now["sources"]]
    old = {e["digest"]: e for e in before.get("sources", [])}
    old_by_spec = {_digest(e["spec"]): e for e in before.get("sources", [])}
    lines = []
    for entry in now["sources"]:
        if entry["digest"] in old:
            continue
        previous = old_by_spec.get(_digest(entry["spec"]))
        lines.append(f"{label(entry)}: " + (_what_changed(previous["state"], entry["state"]) if previous else "new source"))
    gone = {_digest(e["spec"]) for e in now["sources"]}
    lines += [f"{label(e)}: removed" for e in before.get("sources", []) if _digest(e["spec"]) not in gone]
    return lines


def label(entry: dict[str, Any]) -> str:
    """``directory /data/repos``, ``git https://...``, ``python_env 34 distributions``."""
    spec = entry["spec"]
    if "path" in spec:
        return f"{entry['kind']} {spec['path']}"
    if "urls" in spec:
        return f"git {', '.join(spec['urls'])}"
    return f"{entry['kind']} {len(entry['state'].get('distributions', {}))} distributions"


def _what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    if "heads" in new:
        named = len(new["heads"]) > 1  # one URL is already in the label
        moved = [f"{url + ' ' if named else ''}{str(old['heads'].get(url))[:10]} -> {head[:10]}"
                 for url, head in new["heads"].items() if old.get("heads", {}).get(url) != head]
        return "new commits: " + "; ".join(moved)
    if "distributions" in new:
        a, b = old.get("distributions", {}), new["distributions"]
        diff = sorted(f"{n} {a.get(n)} -> {b.get(n)}" for n in set(a) | set(b) if a.get(n) != b.get(n))
        return "distributions changed: " + ", ".join(diff)
    return (f"{old.get('files')} -> {new['files']} files, {old.get('bytes')} -> {new['bytes']} bytes"
            + ("" if (old.get("files"), old.get("bytes")) != (new["files"], new["bytes"]) else " (sizes or mtimes changed)"))


# --------------------------------------------------------------------------- per kind
def python_env_state(distributions: list[str]) -> dict[str, Any]:
    """Name -> version of the distributions a ``python_env`` source takes (every installed one when empty)."""
    wanted = {_norm(d) for d in distributions}
    found: dict[str, str | None] = {}
    for dist in importlib_metadata.distributions():
        name = _norm(dist.metadata["Name"] or "")
        if name and (not wanted or name in wanted):
            found.setdefault(name, dist.version)
    found |= {name: None for name in wanted - set(found)}  # ingest fails on these; recorded, not hidden
    return {"distributions": dict(sorted(found.items()))}


def directory_state(root: Path) -> dict[str, Any]:
    """Count, bytes and a hash of (path, size, mtime) of every file ingest reads under ``root``.

    A file git tracks and holds unmodified (a corpus committed with the workspace) is identified
    by its blob id instead of its mtime: a checkout (a DVC experiment's worktree, a fresh clone)
    writes the same content with new mtimes, which is no change of the source."""
    if not root.is_dir():
        raise ValueError(f"ingest.sources: directory {root} does not exist")
    blobs = git_blobs(root)
    return _listing_state((rel, size, blobs.get(rel, mtime)) for rel, size, mtime in _tree_entries(root))


def git_blobs(root: Path) -> dict[str, str]:
    """``{path under root: "git:<blob id>"}`` of the files git tracks there and that match the index
    (git's own stat check: two commands, no file read); empty outside a git work tree."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env=env, timeout=GIT_TIMEOUT_S)
        return proc.stdout if proc.returncode == 0 else None

    listed = git("ls-files", "-s", "-z", "--", ".")
    if not listed:
        return {}
    modified = set(filter(None, (git("diff", "--name-only", "--relative", "-z", "--", ".") or "").split("\0")))
    blobs = {}
    for entry in filter(None, listed.split("\0")):
        meta, rel = entry.split("\t", 1)
        if rel not in modified:
            blobs[rel] = f"git:{meta.split()[1]}"
    return blobs


def _tree_entries(root: Path) -> Iterator[tuple[str, int, int]]:
    """(relative path, size, mtime ns) of the files in ``root``'s sub-folders, in sorted order.

    The same files ``sources.directory_repositories`` reads: sub-folders are the repositories
    (files directly in ``root`` are not read), ``SKIP_DIRS`` are left out; a repository folder may be
    a link to one (as ``directory_repositories`` follows it), links inside a repository are skipped.
    Hand-written rather than ``sources.walk`` because that yields names without the stat this
    needs and in os.walk's (unsorted) file order."""
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            children = sorted(it, key=lambda e: e.name)
        subdirs = []
        for child in children:
            if prefix and child.is_symlink():
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir(follow_symlinks=not prefix):
                if child.name not in SKIP_DIRS:
                    subdirs.append((Path(child.path), rel + "/"))
            elif prefix and child.is_file(follow_symlinks=False):
                st = child.stat(follow_symlinks=False)
                yield rel, st.st_size, st.st_mtime_ns
        stack.extend(reversed(subdirs))  # the first sub-folder is popped next: a deterministic order


def remote_head(remote: str, branch: str | None) -> str:
    """The commit ``branch`` (default: the remote's HEAD) points at, asked of the remote itself."""
    refs = [f"refs/heads/{branch}", f"refs/tags/{branch}"] if branch else ["HEAD"]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(["git", "ls-remote", remote, *refs], capture_output=True, text=True, env=env,
                              timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ValueError(f"ingest.sources: git ls-remote {remote} gave no answer in {GIT_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise ValueError(f"ingest.sources: cannot read the head of git repository {remote}: {why}")
    heads = dict(reversed(line.split("\t", 1)) for line in proc.stdout.splitlines() if "\t" in line)
    for ref in refs:  # an annotated tag's commit is its peeled ref
        if commit := heads.get(f"{ref}^{{}}") or heads.get(ref):
            return commit
    raise ValueError(f"ingest.sources: git repository {remote} has no {branch or 'HEAD'} (an empty repository?)")


def table_state(path: str, kind: str) -> dict[str, Any]:
    """Count, bytes and a hash of (file, size, mtime) of the table files ``path`` names (file, folder, glob)."""
    return _listing_state(iter(table_listing(path, kind)))


def table_listing(path: str, kind: str) -> list[tuple[str, int, int | None]]:
    """(file, size, mtime ns or None) of each file ingest reads: the files ``sources.table_files``
    finds (a file, a folder, a glob; local or a URI such as ``s3://bucket/ids/*.parquet``), stat-ed
    locally or through pyarrow.fs (``datasets.resolve``: the same S3 endpoint and credentials)."""
    files = [str(f) for f in table_files(path, "jsonl" if kind == "jsonl" else "parquet")]
    if files and "://" in files[0]:
        filesystem, _ = resolve(files[0])
        infos = filesystem.get_file_info([resolve(f)[1] for f in files])
        return [(f, i.size, i.mtime_ns) for f, i in zip(files, infos)]
    return [(f, (st := os.stat(f)).st_size, st.st_mtime_ns) for f in files]


# --------------------------------------------------------------------------- helpers
def _listing_state(entries: Iterator[tuple[str, int, int | str | None]]) -> dict[str, Any]:
    """Streamed: a folder of millions of files is hashed in constant memory."""
    h = hashlib.sha256()
    files = total = 0
    for rel, size, mtime in entries:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
        files += 1
        total += size
    return {"files": files, "bytes": total, "listing_sha256": h.hexdigest()}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _resolve(path: str, workspace: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else workspace / p


def _resolve_uri(path: str, workspace: Path) -> str:
    return path if "://" in path else str(_resolve(path, workspace))


def _git_remote(url: str, workspace: Path) -> str:
    """A URL as is; a local path resolved from the workspace (as ``sources.repositories`` does)."""
    return url if "://" in url or "@" in url else str(_resolve(url, workspace).resolve())
