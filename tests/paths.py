"""Where tests find the repository and their assets, wherever the test file sits."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (holds dvc.yaml, params.yaml)."""
ASSETS = ROOT / "tests" / "assets"
"""Labelled sets and golden curves the tests compare against."""
