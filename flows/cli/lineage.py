"""Where a model came from, and how two runs differ.

    (placeholder: `starflow lineage MODEL` and `starflow compare A B` are being written)
"""

from __future__ import annotations

import typer

lineage_app = typer.Typer()
