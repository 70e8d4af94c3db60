"""The kept tokenizer (``ray_tasks/tokenize/kept.py``): trained once by the stage, then used as the
data grows, so that a model can continue; a bumped ``tokenizer_version`` trains a new one."""

from __future__ import annotations

import json

import pyarrow as pa

from ray_tasks.tokenize.stage import prepare
from tests.ray_tasks.tokenize.test_tokenize import CFG, _corpus, _output_bytes


def _tokenizer(out) -> str:
    return (out / "tokenizer" / "tokenizer.json").read_text()


def _grown(table: pa.Table) -> pa.Table:
    """``table`` and new repositories of other code (another tokenizer would learn other merges)."""
    rows = [{"repo_name": f"org/web{r}", "path": f"src/app{f}.js",
             "content": "\n".join(f"const widget_{r}_{k} = document.querySelector('#panel{k}');" for k in range(30)) + "\n",
             "language": "JavaScript", "sha256": f"web{r}-{f}"} for r in range(4) for f in range(3)]
    return pa.concat_tables([table, pa.Table.from_pylist(rows, schema=table.schema)])


def _run(table, out, cfg, kept=None) -> None:
    out.mkdir()
    prepare(table, out, cfg, kept_tokenizer=kept)


def test_first_run_keeps_its_tokenizer_and_a_grown_corpus_encodes_with_it(tmp_path):
    first = _corpus(6)
    table = _grown(first)
    kept = tmp_path / "kept"
    _run(first, tmp_path / "plain", CFG)
    _run(first, tmp_path / "a", CFG, kept)
    # The first run with a kept folder is the run without one, byte for byte.
    assert _output_bytes(tmp_path / "a") == _output_bytes(tmp_path / "plain")
    assert json.loads((kept / "identity.json").read_text())["version"] == CFG.tokenizer_version

    _run(table, tmp_path / "grown", CFG, kept)
    _run(table, tmp_path / "fresh", CFG)
    assert _tokenizer(tmp_path / "grown") == _tokenizer(tmp_path / "a")  # kept: what the model was trained with
    assert _tokenizer(tmp_path / "fresh") != _tokenizer(tmp_path / "a")  # a fresh run on the union trains anew
    # The same as giving that tokenizer by path: the kept one changes nothing else.
    given = CFG.model_copy(update={"tokenizer_path": str(tmp_path / "a" / "tokenizer")})
    _run(table, tmp_path / "given", given)
    grown, by_path = _output_bytes(tmp_path / "grown"), _output_bytes(tmp_path / "given")
    assert {k: v for k, v in grown.items() if k != "manifest.json"} == \
        {k: v for k, v in by_path.items() if k != "manifest.json"}


def test_a_bumped_version_or_other_settings_train_a_new_one(tmp_path):
    small = _corpus(6)
    table = _grown(small)
    kept = tmp_path / "kept"
    _run(small, tmp_path / "a", CFG, kept)
    bumped = CFG.model_copy(update={"tokenizer_version": CFG.tokenizer_version + 1})
    _run(table, tmp_path / "b", bumped, kept)
    _run(table, tmp_path / "fresh", bumped)
    assert _tokenizer(tmp_path / "b") == _tokenizer(tmp_path / "fresh") != _tokenizer(tmp_path / "a")
    assert json.loads((kept / "identity.json").read_text())["version"] == bumped.tokenizer_version
    # A damaged identity is no kept tokenizer: trained again, never a wrong one used.
    (kept / "identity.json").write_text("{not json")
    _run(table, tmp_path / "c", bumped, kept)
    assert _tokenizer(tmp_path / "c") == _tokenizer(tmp_path / "fresh")
