"""Malware, decontamination and PII as curate runs them: filters on Ray Data workers, then redaction.

The steps must pickle into Ray workers (compiled YARA rules and the Aho-Corasick automaton are
rebuilt there) and give the same answer as a local run.
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from ray_tasks.curate.decontaminate import DecontaminationFilter, build_matcher, contamination_report
from ray_tasks.curate.filters import apply_filters
from ray_tasks.curate.malware import MalwareFilter, build_scanners
from ray_tasks.curate.params import DecontaminationParams, MalwareParams
from ray_tasks.curate.pii import count_totals, drop_count_columns, ip_replacement, redact_batch_counted
from ray_tasks.curate.stage import split_annotated
from ray_tasks.evaluate.humaneval import load_problems
from ray_tasks.executor import map_batches
from tests.ray_tasks.curate.helpers import PII

EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PLANTED = "STARFLOW_PLANTED_MALWARE_7f3a"


@pytest.fixture
def steps(tmp_path):
    import os

    if not shutil.which("clamscan"):
        if os.environ.get("CI"):
            pytest.fail("clamscan is not installed but CI is set")
        pytest.skip("clamscan not installed (apt-get install clamav)")
    (tmp_path / "sigs.ndb").write_text(f"StarFlow.Test.Planted:0:*:{PLANTED.encode().hex()}\n")
    (tmp_path / "rules.yar").write_text('rule EICAR_test_file { strings: $a = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" condition: $a }\n')
    scanners = build_scanners(MalwareParams(clamav_database=str(tmp_path / "sigs.ndb"), yara_rules=[str(tmp_path / "rules.yar")]))
    return [DecontaminationFilter(build_matcher(DecontaminationParams())), MalwareFilter(scanners)]


def _files():
    prompt = load_problems(1)[0].prompt
    contents = [
        'ADMIN = "ops@northwind-logistics.com"\nSERVER = "54.23.11.190"\n',
        EICAR + "\n",
        f"payload = '{PLANTED}'\n",
        prompt.replace("    ", "\t").upper() + "\tPASS\n",
        'def has_close_elements(a, b):\n    """Our own helper."""\n    return abs(a - b) < 1e-9\n',
        'AWS_KEY = "AKIAQW7B3PDKHX4PY8GP"\n',
    ]
    n = len(contents)
    return pa.table({
        "repo_name": [f"r{i}" for i in range(n)], "path": [f"m{i}.py" for i in range(n)], "content": contents,
        "length_bytes": pa.array([len(c.encode()) for c in contents], pa.int64()),
        "sha256": [f"s{i}" for i in range(n)], "license_type": ["permissive"] * n,
    })


def test_steps_on_ray_equal_local_then_redaction(steps, ray_session):
    files = _files()
    local = map_batches(files, apply_filters, 2, {"filters": steps}, use_ray=False)
    on_ray = map_batches(files, apply_filters, 2, {"filters": steps}, use_ray=True)
    assert on_ray.equals(local)
    assert on_ray.column("reason").to_pylist() == [
        None, "malware:yara:EICAR_test_file", "malware:clamav:StarFlow.Test.Planted.UNOFFICIAL",
        "contamination:humaneval", None, None,
    ]
    report = contamination_report(on_ray, steps[0].matcher)
    assert report.select(["path", "item_id", "field"]).to_pylist() == [{"path": "m3.py", "item_id": "HumanEval/0", "field": "docstring"}]

    kept, _ = split_annotated(on_ray)
    counted = map_batches(kept, redact_batch_counted, 2, {"params": PII}, use_ray=True)
    assert counted.equals(map_batches(kept, redact_batch_counted, 2, {"params": PII}, use_ray=False))
    assert count_totals(counted) == {"pii_email": 1, "pii_ip_address": 1, "pii_key": 1, "pii_password": 0}
    redacted = drop_count_columns(counted)
    assert redacted.column_names == kept.column_names
    texts = redacted.column("content").to_pylist()
    assert texts[0] == f'ADMIN = "<EMAIL>"\nSERVER = "{ip_replacement("54.23.11.190")}"\n' and texts[2] == 'AWS_KEY = "<KEY>"\n'
    assert texts[1] == kept.column("content").to_pylist()[1]  # nothing to redact: untouched


def test_steps_built_from_params_and_their_stats(tmp_path):
    from ray_tasks.curate.params import CurateParams
    from ray_tasks.curate.privacy import privacy_filters, privacy_stats, redact_kept

    if not shutil.which("clamscan"):
        pytest.skip("clamscan not installed")  # the clamscan path is covered (and CI-enforced) above
    (tmp_path / "sigs.ndb").write_text(f"StarFlow.Test.Planted:0:*:{PLANTED.encode().hex()}\n")
    cfg = CurateParams.model_validate({
        "malware": {"engines": ["clamav", "yara"], "clamav_database": str(tmp_path / "sigs.ndb"), "yara_rules": []},
        "decontamination": {"humaneval": True},
        "pii": {"types": ["email", "key"]},
    })
    steps = privacy_filters(cfg)
    assert steps.scanners == ["clamav"]  # yara has no rules: reported and left out
    files = _files()
    annotated = map_batches(files, apply_filters, 4, {"filters": [steps.malware, steps.decontamination]}, use_ray=False)
    kept, _ = split_annotated(annotated)
    kept, counts = redact_kept(kept, cfg, use_ray=False)
    assert counts == {"pii_email": 1, "pii_ip_address": 0, "pii_key": 1, "pii_password": 0, "pii_files": 2}
    assert "54.23.11.190" in kept.column("content").to_pylist()[0]  # ip_address not among the types
    stats, report = privacy_stats(annotated, steps, counts, kept)
    assert stats["files_malware"] == 1 and stats["malware_scanners"] == ["clamav"]
    assert stats["files_contaminated"] == 1 and stats["contaminated_by_benchmark"] == {"humaneval": 1}
    assert report.num_rows == 1 and stats["bytes_kept_after_pii"] == sum(kept.column("length_bytes").to_pylist())
    # EICAR is not in this database and YARA is off: it is kept, and redaction leaves it alone.
    assert EICAR + "\n" in kept.column("content").to_pylist()

    off = CurateParams.model_validate({"malware": {"enabled": False}, "decontamination": {"enabled": False},
                                       "pii": {"enabled": False}})
    assert privacy_filters(off) == type(steps)()
    assert redact_kept(kept, off, use_ray=False)[1]["pii_files"] == 0
    with pytest.raises(ValueError, match="no benchmark strings"):
        privacy_filters(CurateParams.model_validate({"decontamination": {"humaneval": False}}))


@pytest.mark.slow
def test_curate_stage_drops_malware_and_contamination_and_redacts(tmp_path):
    """`starflow stage ingest/dedup/curate` in a fresh workspace: the stats carry every count."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq
    import yaml

    from tests.conftest import MIT
    from flows.config import parse_params
    from flows.workspace import FILES
    from ray_tasks.tables import read_table

    if not shutil.which("clamscan"):
        if os.environ.get("CI"):
            pytest.fail("clamscan is not installed but CI is set")
        pytest.skip("clamscan not installed (apt-get install clamav)")
    from tests.paths import ROOT as root
    ws = tmp_path / "ws"
    repo = ws / "corpus" / "app"
    (repo / "pkg").mkdir(parents=True)
    (repo / "LICENSE").write_text(MIT)
    (repo / "pkg" / "settings.py").write_text(
        '"""Settings for the service that sends the daily report to the team."""\n\n'
        'ADMIN_EMAIL = "ops@northwind-logistics.com"\nUPSTREAM_SERVER = "54.23.11.190"\n'
        'AWS_ACCESS_KEY_ID = "AKIAQW7B3PDKHX4PY8GP"\nDATABASE_PASSWORD = "Tr0ub4dor&3horse"\n')
    (repo / "pkg" / "dropper.py").write_text(f'"""Looks like a helper module for the report."""\n\npayload = "{PLANTED}"\n')
    (repo / "pkg" / "eicar.py").write_text(f'"""Looks like a test fixture for the report."""\n\nDATA = {EICAR!r}\n')
    prompt = load_problems(3)[2].prompt
    (repo / "pkg" / "copied.py").write_text(prompt.replace("    ", "  ").upper() + "  RETURN NUMBER % 1.0\n")
    (repo / "pkg" / "clean.py").write_text('"""A clean module about numbers."""\n\n\ndef truncate_number(x):\n    return int(x)\n')
    (ws / "sigs.ndb").write_text(f"StarFlow.Test.Planted:0:*:{PLANTED.encode().hex()}\n")
    (ws / "rules.yar").write_text('rule EICAR_test_file { strings: $a = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" condition: $a }\n')
    params = {
        "ingest": {"sources": [{"kind": "directory", "path": "corpus"}]},
        "curate": {"malware": {"clamav_database": "sigs.ndb", "yara_rules": ["rules.yar"]}},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256},
    }
    (ws / "params.yaml").write_text(yaml.safe_dump(parse_params(params).model_dump(mode="json"), sort_keys=False))
    shutil.copy2(root / "dvc.yaml", ws / "dvc.yaml")
    env = {**os.environ, "PREFECT_HOME": str(ws / ".prefect-home"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    starflow = str(Path(sys.executable).parent / "starflow")
    for cmd in (["init"], ["stage", "ingest", "dedup", "curate"]):  # three stages, one process
        proc = subprocess.run([starflow, *cmd], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    stats = json.loads((ws / "data" / "curate" / "stats.json").read_text())
    assert stats["files_malware"] == 2 and sorted(stats["malware_scanners"]) == ["clamav", "yara"]
    assert stats["files_contaminated"] == 1 and stats["contaminated_by_benchmark"] == {"humaneval": 1}
    assert {k: stats[k] for k in ("pii_email", "pii_ip_address", "pii_key", "pii_password")} == \
        {"pii_email": 1, "pii_ip_address": 1, "pii_key": 1, "pii_password": 1}
    metrics = json.loads((ws / "metrics" / "curate.json").read_text())
    assert metrics["files_malware"] == 2 and metrics["pii_key"] == 1 and metrics["files_contaminated"] == 1
    kept = {r["path"]: r["content"] for r in read_table(ws / "data" / "curate" / FILES).to_pylist()}  # a dataset folder
    assert set(kept) >= {"pkg/settings.py", "pkg/clean.py"} and not set(kept) & {"pkg/dropper.py", "pkg/eicar.py", "pkg/copied.py"}
    assert "<EMAIL>" in kept["pkg/settings.py"] and "AKIAQW7B3PDKHX4PY8GP" not in kept["pkg/settings.py"]
    report = pq.read_table(ws / "data" / "curate" / "contamination.parquet").to_pylist()
    assert [(r["path"], r["item_id"]) for r in report] == [("pkg/copied.py", "HumanEval/2")]
