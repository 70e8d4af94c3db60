"""DeepSpeed on CPU: the loss falls, an interrupted run resumes to the same result, the export loads."""

import shutil

import numpy as np
import pytest

from models.perplexity import perplexity
from models.presets import ModelShape
from models.train import TrainConfig, export_hf, train
from ray_tasks.shards import write_test_shards
from ray_tasks.tokenizer import save_hf_tokenizer, train_bpe

pytestmark = pytest.mark.slow

SHAPE = ModelShape(64, 2, 4, 2, 256, max_position_embeddings=128, sliding_window=16)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Shards of a learnable sequence: a repeating 30-token cycle in many phases."""
    d = tmp_path_factory.mktemp("shards")
    cycle = np.tile(np.arange(100, 130), 10)
    arr = np.stack([np.roll(cycle, i)[:32] for i in range(240)]).astype(np.uint16)
    write_test_shards(d, arr[:200].reshape(-1), arr[200:].reshape(-1), seq_len=32, vocab_size=300)
    tok = train_bpe(["def f(x):\n    return x\n"] * 10, 300, 1)
    save_hf_tokenizer(tok, d / "tokenizer", 32)
    return d


def _cfg(shards, work, **kw):
    base = dict(shards_dir=str(shards), tokenizer_dir=str(shards / "tokenizer"), work_dir=str(work), model=SHAPE,
                micro_batch_size=8, max_steps=40, lr=3e-3, warmup_steps=4, eval_every=10, eval_batches=4,
                checkpoint_every=10, zero_stage=2)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_export_matches(shards, tmp_path):
    cfg = _cfg(shards, tmp_path / "work")
    seen = []
    result = train(cfg, on_metrics=lambda step, m: seen.append(step))
    assert result.val_loss_before > 5.0  # ~ln(300) at random init
    assert result.val_loss_after < result.val_loss_before - 2.0
    assert seen[0] == 0 and seen[-1] == 40
    out = export_hf(cfg, result.checkpoint_tag, tmp_path / "hf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.sliding_window == 16 and model.config.num_key_value_heads == 2
    assert AutoTokenizer.from_pretrained(out).eos_token_id == 0
    ppl = perplexity(str(out), str(shards), 8, 4)
    assert ppl["val_loss"] == pytest.approx(result.val_loss_after, rel=1e-4)


def test_interrupted_run_resumes_to_the_same_result(shards, tmp_path):
    full = train(_cfg(shards, tmp_path / "full", zero_stage=3))
    work = tmp_path / "interrupted"
    train(_cfg(shards, work, zero_stage=3))
    # Simulate a crash after step 30: drop the last checkpoint, point `latest` back.
    shutil.rmtree(work / "step40")
    (work / "latest").write_text("step30")
    resumed = train(_cfg(shards, work, zero_stage=3))
    assert resumed.resumed_from_step == 30
    assert resumed.val_loss_after == pytest.approx(full.val_loss_after, rel=1e-5)
    # A changed config never resumes from a foreign checkpoint.
    fresh = train(_cfg(shards, work, zero_stage=3, lr=1e-3))
    assert fresh.resumed_from_step == 0


def test_two_ranks_with_torchrun(shards, tmp_path):
    from models.launch import launch

    result = launch(_cfg(shards, tmp_path / "ddp", max_steps=20, zero_stage=2), num_processes=2)
    assert result.val_loss_after < result.val_loss_before - 1.0
    assert result.tokens_seen == 20 * 8 * 32 * 2  # both ranks' batches count


def test_new_data_never_resumes_an_old_checkpoint(shards, tmp_path):
    import json

    work = tmp_path / "w"
    train(_cfg(shards, work, max_steps=10))
    assert train(_cfg(shards, work, max_steps=10)).resumed_from_step == 10  # same data and config: resumes
    other = tmp_path / "other"
    shutil.copytree(shards, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["splits"]["train"]["sha256"] = "changed"
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert train(_cfg(other, work, max_steps=10)).resumed_from_step == 0
