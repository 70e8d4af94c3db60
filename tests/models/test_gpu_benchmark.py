"""benchmarks/gpu.py runs on CPU with the tiny preset (the GPU check itself needs a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import ROOT


@pytest.mark.slow
def test_gpu_benchmark_runs_on_cpu_with_the_tiny_preset():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--preset", "tiny", "--dtype", "fp32",
                          "--steps", "3", "--json"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["model"] == "tiny" and result["dtype"] == "fp32" and result["steps"] == 3
    assert result["tokens_per_second"] > 0 and result["peak_memory_gib"] > 0
    assert result["seq_len"] == 1024  # the tiny preset's max positions, below the 4096 default
    assert result["mfu"] is None  # no peak known for a CPU (and none given)
    assert result["final_train_loss"] > 0
