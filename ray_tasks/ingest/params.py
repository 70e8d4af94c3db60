"""Parameters of the ingest stage (``params.yaml: ingest``): where code comes from, what is skipped."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ray_tasks.params import StageParams


class PythonEnvSource(StageParams):
    """The source code of Python distributions installed in this environment.

    Each distribution is one repository, its license read from its dist-info."""

    kind: Literal["python_env"] = "python_env"
    distributions: list[str] = Field(default_factory=list)
    """Distribution names to take (empty: every installed distribution)."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per distribution (None: all), taken in sorted path order."""


class DirectorySource(StageParams):
    """A folder whose sub-folders are repositories (``<path>/<repo>/...``)."""

    kind: Literal["directory"] = "directory"
    path: str
    """Folder of repositories; relative paths are taken from the workspace."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per repository (None: all)."""


class GitSource(StageParams):
    """Git repositories by URL or local path, shallow-cloned (depth 1) at their default branch."""

    kind: Literal["git"] = "git"
    urls: list[str] = Field(min_length=1)
    """Clone URLs (https, ssh, file) or local paths; ``owner/name`` of the URL becomes the repo name."""
    branch: str | None = None
    """Branch or tag to take instead of the default branch."""
    cache_dir: str = ".starflow/git"
    """Where clones are kept between runs (refreshed with a shallow fetch)."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per repository (None: all)."""


class TableSource(StageParams):
    """Parquet or JSONL files with one row per file (The Stack v2 schema: repo_name, path, content + metadata)."""

    kind: Literal["parquet", "jsonl"] = "parquet"
    path: str
    """A file, a folder (searched recursively) or a glob."""
    columns: dict[str, str] = Field(default_factory=dict)
    """StarFlow column -> your column, for other schemas (e.g. ``{content: text, repo_name: repo}``)."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per repository (None: all)."""


Source = Annotated[PythonEnvSource | DirectorySource | GitSource | TableSource, Field(discriminator="kind")]


class IngestParams(StageParams):
    sources: list[Source] = Field(default_factory=lambda: [PythonEnvSource()], min_length=1)
    """Where code comes from; each entry has a ``kind``."""
    max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    """Files of this size or more are skipped (The Stack v2: 10 MiB)."""
    opt_out: list[str] = Field(default_factory=list)
    """Repositories whose owners opted out: exact names or globs (``owner/*``), case-insensitive. Never ingested."""

SOURCE_KINDS = frozenset(k for cls in (PythonEnvSource, DirectorySource, GitSource, TableSource)
                         for k in cls.model_fields["kind"].annotation.__args__)
"""Every ``kind`` a source entry may have."""
