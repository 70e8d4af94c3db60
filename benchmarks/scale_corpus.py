"""A corpus of real code at a given size, for the scale benchmark: a ``directory`` source.

    .venv/bin/python benchmarks/scale_corpus.py --mb 120 1200     # build (cached), print the views
    .venv/bin/python benchmarks/scale_corpus.py --list             # the candidate pool, no copying

What it is: a folder whose sub-folders are repositories (ingest's ``directory`` source), made of
real files found on this machine:

* every interpreter's standard library under ``/root/.pyenv/versions/*/lib/python*`` and the
  system's ``/usr/lib/python3.*``: one repository per top-level package (plus one of the loose
  top-level modules), each with the interpreter's ``LICENSE.txt`` (the PSF license) at its root.
  Nine versions of one library are real near-duplicates, as forks and vendored copies are on GitHub;
* every distribution in the site-packages folders (the project's venv, each pyenv interpreter's,
  Debian's ``dist-packages``): one repository per distribution, its RECORD-listed files, with the
  license files of its dist-info placed where they apply (``sources.license_dir_in_dist``, as the
  ``python_env`` source reads them);
* other real trees: the Google Cloud SDK's packages and bundled tools, ``/usr/include``, CUDA's
  headers, npm's bundled packages, Perl's library; one repository per top-level folder.

Only text files are copied (no NUL byte, under 1 MiB): the size is the size of code, not of
``.so`` files ingest would skip. A repository over ``MAX_REPO_MB`` (torch, botocore, the SDK's generated
clients) is split into one repository per sub-folder (its loose files one more), each with the
license files of the whole, so that one repository never makes a size lumpy.

Like-for-like sizes: the repositories are taken in one fixed order (sha1 of the name, so each
prefix is a random sample of the whole pool, with the same mix of sources and the same share of
near-duplicates per byte), and each size is the prefix of that order closest to its target. A
smaller size is therefore a subset of whole repositories of every bigger one. If the real pool runs
out, synthetic near-copies follow (a real repository copied under ``<name>~nc<k>`` with a few lines
of every file edited: realistic near-duplicates); the manifest counts them and the scale benchmark
prints how much of each size is synthetic.

Cached: repositories are copied once into ``CACHE/repos/`` (each under a temporary name, then
renamed: an interrupted build never leaves a half repository), ``CACHE/manifest.json`` fixes their
order for good (the same corpus every run, even if the machine's packages change later: a later,
bigger build only appends), and a size is a folder of symlinks to its repositories
(``CACHE/views/<MB>MB``; ingest reads symlinked repository folders as folders).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("STARFLOW_SCALE_CORPUS", "/work/bench_corpus"))
"""Where the corpus is built (outside the repository: 1.2 GB)."""
RULES_VERSION = 2
"""Bumped when the selection rules change; the cache of another version is not reused."""
MAX_FILE_BYTES = 2**20
MAX_REPO_MB = 25.0
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", ".tox", ".mypy_cache"}
EXCLUDED_PATHS = ("licensedcode/data/",)
"""ScanCode's own license texts and rules (thousands of files named ``*.LICENSE``): the known-text
fast pass is built from exactly these, so they would flatter the license check and dominate its
time (benchmarks/license_fastpass.py leaves them out for the same reason)."""
STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__", "lib-dynload"}


@dataclass
class Candidate:
    """A repository to be: real files (path in the repository -> file on this machine)."""

    name: str
    origin: str
    files: dict[str, Path] = field(default_factory=dict, repr=False)

    def text_bytes(self) -> int:
        """Bytes of the files that look like text (no NUL in their first 8 KiB, at most
        ``MAX_FILE_BYTES``): about what ``materialise`` copies, without copying."""
        total = 0
        for p in self.files.values():
            try:
                size = p.stat().st_size
                if size <= MAX_FILE_BYTES:
                    with open(p, "rb") as fh:
                        total += size if is_text(fh.read(8192)) else 0
            except OSError:
                pass
        return total

    def stat_bytes(self) -> int:
        total = 0
        for p in self.files.values():
            try:
                total += p.stat().st_size
            except OSError:
                pass
        return total


# --------------------------------------------------------------------------- the pool
def walk_files(base: Path, prefix: str = "") -> dict[str, Path]:
    """Regular files under ``base`` (no symlinks, no VCS or cache folders), by relative path."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fn in sorted(filenames):
            full = Path(dirpath) / fn
            if not full.is_symlink() and full.suffix not in {".pyc", ".pyo"}:
                out[prefix + full.relative_to(base).as_posix()] = full
    return out


def folder_packages(base: Path, origin: str, license_file: Path | None = None,
                    skip: set[str] = frozenset()) -> list[Candidate]:
    """One repository per sub-folder of ``base`` and one of its loose files (``<origin>__modules``);
    ``license_file`` (the tree's own license) is put at each repository's root."""
    if not base.is_dir():
        return []
    out: list[Candidate] = []
    loose = Candidate(f"{origin}__modules", origin)
    for entry in sorted(base.iterdir()):
        if entry.is_symlink() or entry.name in skip or entry.name in SKIP_DIRS or entry.name.endswith((".dist-info", ".egg-info")):
            continue
        if entry.is_dir():
            out.append(Candidate(f"{origin}__{entry.name}", origin, walk_files(entry, f"{entry.name}/")))
        elif entry.is_file() and entry.suffix not in {".pyc", ".pyo"} and entry != license_file:
            loose.files[entry.name] = entry
    if loose.files:
        out.append(loose)
    if license_file is not None and license_file.is_file():
        for c in out:
            c.files.setdefault("LICENSE", license_file)
    return out


def stdlibs() -> list[Candidate]:
    """Each interpreter's standard library, one repository per top-level package."""
    out: list[Candidate] = []
    libs = sorted(Path("/root/.pyenv/versions").glob("*/lib/python*")) + sorted(Path("/usr/lib").glob("python3.*"))
    for lib in libs:
        if not lib.is_dir() or lib.is_symlink():
            continue
        where = "pyenv" if lib.is_relative_to("/root/.pyenv") else "debian"
        out += folder_packages(lib, f"{where}-py{lib.name.removeprefix('python')}", lib / "LICENSE.txt", STDLIB_SKIP)
    return out


def site_packages_folders() -> list[tuple[Path, str]]:
    found = [(ROOT / ".venv" / "lib" / "python3.11" / "site-packages", "venv")]
    found += [(p, f"pyenv-py{p.parent.name.removeprefix('python')}-site")
              for p in sorted(Path("/root/.pyenv/versions").glob("*/lib/python*/site-packages"))]
    found += [(Path("/usr/lib/python3/dist-packages"), "debian-dist")]
    return [(p, o) for p, o in found if p.is_dir()]


def distributions() -> list[Candidate]:
    """Each installed distribution of every site-packages folder: its RECORD files, and its
    dist-info license files where they apply (as the ``python_env`` source reads them)."""
    from importlib import metadata

    from ray_tasks.ingest.sources import dist_license_paths, license_dir_in_dist

    out: list[Candidate] = []
    for site, origin in site_packages_folders():
        seen: set[str] = set()
        for dist in sorted(metadata.distributions(path=[str(site)]), key=lambda d: (d.metadata["Name"] or "", d.version or "")):
            name = (dist.metadata["Name"] or "").lower().replace("_", "-")
            if not name or name in seen or not dist.files:
                continue
            seen.add(name)
            cand = Candidate(f"{origin}__{name}-{dist.version}", origin)
            for f in dist.files:
                parts = f.parts
                if (".." in parts or any(p.endswith((".dist-info", ".egg-info")) or p in SKIP_DIRS for p in parts)
                        or any(x in f.as_posix() for x in EXCLUDED_PATHS)):
                    continue
                path = Path(dist.locate_file(f))
                if path.suffix not in {".pyc", ".pyo"} and not path.is_symlink() and path.is_file():
                    cand.files[f.as_posix()] = path
            if not cand.files:
                continue
            for record_path, path in sorted(dist_license_paths(dist).items()):
                if path.is_file():
                    target = license_dir_in_dist(record_path) + record_path.rsplit("/", 1)[-1]
                    while target in cand.files:
                        target = target + "_"
                    cand.files[target] = path
            out.append(cand)
    return out


def other_trees() -> list[Candidate]:
    """Other real source trees on this machine, one repository per top-level folder."""
    sdk = Path("/usr/lib/google-cloud-sdk")
    out = folder_packages(sdk / "lib" / "third_party", "gcloud-third-party")
    out += folder_packages(sdk / "lib" / "googlecloudsdk", "gcloud-sdk")
    out += folder_packages(sdk / "lib" / "surface", "gcloud-surface")
    out += folder_packages(sdk / "platform", "gcloud-platform")
    out += folder_packages(Path("/usr/include"), "usr-include")
    for cuda in sorted(Path("/usr/local").glob("cuda-*/include")):
        out += folder_packages(cuda, f"{cuda.parent.name}-include")
    out += folder_packages(Path("/usr/lib/node_modules/npm/node_modules"), "npm")
    for perl in [*sorted(Path("/usr/share/perl").glob("5.*")), *sorted(Path("/usr/lib/x86_64-linux-gnu/perl").glob("5.*"))]:
        if perl.is_dir() and not perl.is_symlink():
            out += folder_packages(perl, f"perl-{perl.name}{'-xs' if 'x86_64' in str(perl) else ''}")
    return out


def split_large(cand: Candidate) -> list[Candidate]:
    """``cand`` itself, or one repository per top-level folder (recursively, while over
    ``MAX_REPO_MB``), each keeping the license files of the whole at its root."""
    if cand.stat_bytes() <= MAX_REPO_MB * 1e6:
        return [cand]
    from ray_tasks.ingest.licenses import is_license_file

    licenses = {rel: p for rel, p in cand.files.items() if "/" not in rel and is_license_file(rel)}
    by_top: dict[str, dict[str, Path]] = {}
    for rel, p in cand.files.items():
        head, sep, rest = rel.partition("/")
        if sep and rest:
            by_top.setdefault(head, {})[rest] = p
        elif rel not in licenses:
            by_top.setdefault("", {})[rel] = p
    if len(by_top) == 1 and "" not in by_top:  # one folder holds everything: go one level down
        (head, files), = by_top.items()
        inner = Candidate(cand.name, cand.origin, {**files, **licenses})
        return split_large(inner) if inner.stat_bytes() < cand.stat_bytes() else [cand]
    out: list[Candidate] = []
    for head, files in sorted(by_top.items()):
        part = Candidate(f"{cand.name}__{head or 'modules'}", cand.origin, {**files, **licenses})
        out += split_large(part) if head else [part]
    return out


def order_key(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def candidates() -> list[Candidate]:
    """The whole pool in the corpus's fixed order (by sha1 of the name: a random, stable order)."""
    pool = {part.name: part for c in [*stdlibs(), *distributions(), *other_trees()] if c.files
            for part in split_large(c)}
    return sorted(pool.values(), key=lambda c: order_key(c.name))


# --------------------------------------------------------------------------- the cache
def cache_dir() -> Path:
    return CACHE / f"v{RULES_VERSION}"


def load_manifest() -> dict:
    path = cache_dir() / "manifest.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"rules_version": RULES_VERSION, "repos": [], "left_out": {}, "pool_exhausted": False}


def save_manifest(manifest: dict) -> None:
    path = cache_dir() / "manifest.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)


def is_text(data: bytes) -> bool:
    return b"\0" not in data


def materialise(cand: Candidate, dest: Path) -> dict:
    """Copy ``cand``'s text files into ``dest`` (via a temporary folder); returns its manifest entry."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    n = total = binary = 0
    for rel, src in sorted(cand.files.items()):
        try:
            if src.stat().st_size > MAX_FILE_BYTES:
                continue
            data = src.read_bytes()
        except OSError:
            continue
        if not is_text(data):
            binary += 1
            continue
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        n, total = n + 1, total + len(data)
    if n:
        tmp.rename(dest)
    return {"name": cand.name, "origin": cand.origin, "files": n, "bytes": total, "binary_skipped": binary,
            "synthetic": False}


def near_copy_text(text: str, key: str) -> str:
    """A near-duplicate of a file: about one line in 25 edited (a trailing comment, a renamed
    word), the way a fork or a vendored copy drifts; deterministic in ``key``."""
    lines = text.split("\n")
    for i in range(len(lines)):
        h = int(hashlib.sha1(f"{key}:{i}".encode()).hexdigest()[:8], 16)
        if h % 25 == 0:
            lines[i] = lines[i] + "  # local change"
        elif h % 25 == 1:
            lines[i] = lines[i].replace("value", "val").replace("self", "this")
    return "\n".join(lines)


def near_copy(src_dir: Path, dest: Path, name: str, k: int, of: dict) -> dict:
    """A synthetic near-copy of a materialised repository (license files unchanged)."""
    from ray_tasks.ingest.licenses import is_license_file

    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    n = total = 0
    for src in sorted(p for p in src_dir.rglob("*") if p.is_file()):
        rel = src.relative_to(src_dir).as_posix()
        data = src.read_bytes()
        if not is_license_file(src.name):
            data = near_copy_text(data.decode("utf-8", "surrogateescape"), f"{name}/{rel}").encode("utf-8", "surrogateescape")
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        n, total = n + 1, total + len(data)
    tmp.rename(dest)
    return {"name": name, "origin": of["origin"], "files": n, "bytes": total, "binary_skipped": 0,
            "synthetic": True, "copy_of": of["name"], "copy": k}


def ensure(total_mb: float, log=print) -> dict:
    """The cached corpus holding at least ``total_mb`` MB of code (built or extended as needed)."""
    repos_dir = cache_dir() / "repos"
    repos_dir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest()
    have = sum(r["bytes"] for r in manifest["repos"])
    target = total_mb * 1e6
    if have >= target:
        return manifest
    log(f"corpus: {have / 1e6:.0f} MB cached, building up to {total_mb:.0f} MB in {repos_dir}")
    known = {r["name"] for r in manifest["repos"]} | set(manifest["left_out"])
    if not manifest["pool_exhausted"]:
        pool = candidates()
        log(f"corpus: {len(pool)} candidate repositories on this machine")
        for cand in pool:
            if have >= target:
                break
            if cand.name in known:
                continue
            if cand.stat_bytes() > MAX_REPO_MB * 1e6:
                manifest["left_out"][cand.name] = f"over {MAX_REPO_MB:.0f} MB"
                continue
            entry = materialise(cand, repos_dir / cand.name)
            if not entry["files"]:
                manifest["left_out"][cand.name] = "no text files"
                continue
            manifest["repos"].append(entry)
            have += entry["bytes"]
            if len(manifest["repos"]) % 100 == 0:
                save_manifest(manifest)
                log(f"corpus: {len(manifest['repos'])} repositories, {have / 1e6:.0f} MB")
        else:
            manifest["pool_exhausted"] = True
    k = 0
    while have < target:  # real files ran out: near-copies of the real repositories, in order
        k += 1
        real = [r for r in manifest["repos"] if not r["synthetic"]]
        for of in real:
            name = f"{of['name']}~nc{k}"
            if have >= target:
                break
            if name in known:
                continue
            entry = near_copy(repos_dir / of["name"], repos_dir / name, name, k, of)
            manifest["repos"].append(entry)
            have += entry["bytes"]
    save_manifest(manifest)
    log(f"corpus: {len(manifest['repos'])} repositories, {have / 1e6:.0f} MB "
        f"({sum(r['bytes'] for r in manifest['repos'] if r['synthetic']) / 1e6:.0f} MB synthetic)")
    return manifest


def prefix_for(manifest: dict, target_mb: float) -> list[dict]:
    """The prefix of the corpus's order whose size is closest to ``target_mb``."""
    best, total, best_gap = 0, 0, target_mb * 1e6
    for i, r in enumerate(manifest["repos"]):
        total += r["bytes"]
        gap = abs(total - target_mb * 1e6)
        if gap < best_gap:
            best, best_gap = i + 1, gap
        if total > target_mb * 1e6:
            break
    return manifest["repos"][:best]


def view(target_mb: float, log=print) -> tuple[Path, dict]:
    """A ``directory`` source of about ``target_mb`` MB of code: (its folder, a summary)."""
    manifest = ensure(target_mb, log)
    repos = prefix_for(manifest, target_mb)
    folder = cache_dir() / "views" / f"{target_mb:g}MB"
    names = [r["name"] for r in repos]
    if not folder.is_dir() or sorted(p.name for p in folder.iterdir()) != sorted(names):
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in names:
            (tmp / name).symlink_to(cache_dir() / "repos" / name, target_is_directory=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    summary = {"path": str(folder), "target_mb": target_mb, "repos": len(repos), "files": sum(r["files"] for r in repos),
               "mb": sum(r["bytes"] for r in repos) / 1e6,
               "synthetic_mb": sum(r["bytes"] for r in repos if r["synthetic"]) / 1e6,
               "by_origin_mb": _by_origin(repos)}
    return folder, summary


def origin_kind(origin: str) -> str:
    """``stdlib``, ``site-packages`` or the tree's family (gcloud, usr, cuda, npm, perl)."""
    if re.fullmatch(r"(pyenv|debian)-py[\d.]+", origin):
        return "stdlib"
    if origin.endswith("-site") or origin in {"venv", "debian-dist"}:
        return "site-packages"
    return origin.split("-")[0]


def _by_origin(repos: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in repos:
        kind = origin_kind(r["origin"]) + (" (synthetic)" if r["synthetic"] else "")
        out[kind] = out.get(kind, 0) + r["bytes"] / 1e6
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, nargs="*", default=[120, 360, 1200], help="sizes (MB of code) to make views of")
    ap.add_argument("--list", action="store_true", help="print the candidate pool (stat sizes) and exit")
    args = ap.parse_args()
    if args.list:
        pool = candidates()
        fits = [c for c in pool if c.stat_bytes() <= MAX_REPO_MB * 1e6]
        by: dict[str, float] = {}
        for c in fits:
            by[c.origin] = by.get(c.origin, 0) + c.text_bytes() / 1e6
        for origin, mb in sorted(by.items(), key=lambda kv: -kv[1]):
            print(f"{origin:<32}{mb:>9.1f} MB")
        print(f"{len(pool)} candidates, {len(fits)} under {MAX_REPO_MB:.0f} MB: {sum(by.values()):.0f} MB of text files")
        return
    for mb in args.mb:
        folder, summary = view(mb)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
