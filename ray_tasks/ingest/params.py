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


class StackV2Source(StageParams):
    """The Stack v2 as BigCode releases it: Parquet files of ids and metadata, one row per file
    (``blob_id``, ``repo_name``, ``path``, ``src_encoding``, ``language``, ``license_type``,
    ``detected_licenses``...), no content. Contents are fetched per file from Software Heritage's
    S3 bucket (``s3://softwareheritage/content/<blob_id>``, gzip), in the workers that ingest each
    group of repositories (``ray_tasks/ingest/stack_v2.py``). Bulk downloads from that bucket need
    an agreement with Software Heritage (the dataset card's terms of use)."""

    kind: Literal["stack_v2"] = "stack_v2"
    path: str
    """The id files: a Parquet file, a folder (searched recursively) or a glob, local or a URI
    (``s3://bucket/prefix/*.parquet``; endpoint and credentials from the usual AWS variables)."""
    columns: dict[str, str] = Field(default_factory=dict)
    """StarFlow column -> the files' column, for copies that renamed some (e.g. ``{blob_id: sha1}``)."""
    bucket: str = "softwareheritage"
    """Bucket holding the contents (Software Heritage's public one)."""
    key_prefix: str = "content/"
    """Key of a content: this prefix + ``blob_id``."""
    endpoint_url: str | None = None
    """S3 endpoint of the bucket; None: AWS (or ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` when
    set, as boto3 reads them). A mirror, MinIO or a test server: its URL."""
    region: str = "us-east-1"
    """Region of the bucket (Software Heritage's is in us-east-1)."""
    unsigned: bool = True
    """Anonymous (unsigned) requests, as The Stack v2's own example fetches the public bucket;
    false: sign with the usual AWS credentials (a private mirror)."""
    concurrency: int = Field(default=16, ge=1, le=256)
    """Contents fetched at once by one ingest task (threads: fetching is waiting on the network, so
    a task on one CPU keeps this many requests in flight)."""
    max_attempts: int = Field(default=6, ge=1)
    """Tries per content before it is a ``fetch_failed`` rejection: throttling (503 SlowDown, 429),
    5xx and connection or read errors are retried; a missing blob (404) is not."""
    backoff_s: float = Field(default=0.5, gt=0)
    """Base of the exponential back-off between tries: try n waits a random time up to
    ``backoff_s * 2**n`` (full jitter), capped by ``backoff_max_s``."""
    backoff_max_s: float = Field(default=20.0, gt=0)
    """Longest wait between two tries."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Connect and read timeout of one request (a timeout is retried)."""
    fetch_failures: Literal["stop", "reject"] = "stop"
    """A content still failing after ``max_attempts`` (throttling, 5xx, connection errors) or
    refused (403): ``stop`` fails the stage with the error, and a re-run fetches what the cache
    lacks; ``reject`` makes it a ``fetch_failed`` rejected row and the run completes without it
    (DVC then sees nothing to redo: only a forced re-run asks again). Missing blobs, bad gzip and
    undecodable contents are properties of the data: always rejected rows."""
    cache_dir: str | None = ".starflow/stack_v2"
    """Local content cache, one file per ``blob_id`` (the gzip as fetched, written atomically once
    it decompresses), reused across runs: a re-run fetches only what it has not got. It keeps
    every content fetched and is never pruned (about the compressed size of what was ingested).
    Relative paths are taken from the workspace; on a cluster each node keeps its own (a shared
    filesystem path makes it one). None: no cache."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per repository (None: all), in path order."""


Source = Annotated[PythonEnvSource | DirectorySource | GitSource | TableSource | StackV2Source,
                   Field(discriminator="kind")]


class IngestParams(StageParams):
    sources: list[Source] = Field(default_factory=lambda: [PythonEnvSource()], min_length=1)
    """Where code comes from; each entry has a ``kind``."""
    max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    """Files of this size or more are skipped (The Stack v2: 10 MiB)."""
    opt_out: list[str] = Field(default_factory=list)
    """Repositories whose owners opted out: exact names or globs (``owner/*``), case-insensitive. Never ingested."""
    batch_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Bytes of source files per unit of parallel work (one task: a group of whole repositories,
    read, decoded and license-scanned together; a repository bigger than this is a group alone).
    Smaller groups spread better over workers and hold less memory each; larger ones cost less
    scheduling. A worker holds about 3x this (raw bytes, decoded text, Arrow table)."""
    max_in_flight: int = Field(default=4, gt=0)
    """Groups submitted and not yet written, at most: with ``batch_bytes`` it bounds the memory of
    results waiting to be written (about ``max_in_flight * batch_bytes`` in Ray's object store).
    At least the number of workers (``ray.num_cpus`` or the cluster's CPUs) keeps them all busy;
    twice that hides uneven groups."""
    row_group_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """Content bytes per Parquet row group of the outputs: the driver buffers at most this much
    before writing; readers can read row groups one at a time. Dedup holds about three row
    groups' content at once, so this bounds its memory too (128 MiB made its peak grow with the
    corpus, 16 MiB did not: benchmarks/dedup_memory.py)."""

SOURCE_KINDS = frozenset(k for cls in (PythonEnvSource, DirectorySource, GitSource, TableSource, StackV2Source)
                         for k in cls.model_fields["kind"].annotation.__args__)
"""Every ``kind`` a source entry may have."""
