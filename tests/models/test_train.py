"""DeepSpeed on CPU: the loss falls, an interrupted run resumes to the same result, the export loads."""

import math
import shutil

import numpy as np
import pytest

from models.distributed import launcher_free_env
from models.params import ModelShape, TrainParams
from models.data import TokenShards
from models.perplexity import eval_window_bytes, perplexity, token_bytes
from models.run import TrainRun
from models.train import export_hf, train
from ray_tasks.tokenize.tokenizer import save_hf_tokenizer, train_bpe
from tests.models.helpers import write_test_shards

pytestmark = pytest.mark.slow

SHAPE = ModelShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=256, max_position_embeddings=128, sliding_window=16, rope_theta=100_000.0,
                   tie_word_embeddings=True)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Shards of a learnable sequence: a repeating 30-token cycle in many phases."""
    d = tmp_path_factory.mktemp("shards")
    cycle = np.tile(np.arange(100, 130), 10)
    arr = np.stack([np.roll(cycle, i)[:32] for i in range(240)]).astype(np.uint16)
    write_test_shards(d, arr[:200].reshape(-1), arr[200:].reshape(-1), seq_len=32, vocab_size=300, seq_len_stage2=64)
    tok = train_bpe(["def f(x):\n    return x\n"] * 10, 300, 1)
    save_hf_tokenizer(tok, d / "tokenizer", 32)
    return d


def _cfg(shards, work, shape=SHAPE, **hparams):
    """A run on the test shards; ``hparams`` are TrainParams fields over the tests' defaults."""
    base = dict(micro_batch_size=8, max_steps=40, lr=3e-3, warmup_steps=4, eval_every=10, eval_batches=4,
                checkpoint_every=10, zero_stage=2)
    return TrainRun(hparams=TrainParams(**{**base, **hparams}), shape=shape, shards_dir=str(shards),
                    tokenizer_dir=str(shards / "tokenizer"), work_dir=str(work))


def test_loss_falls_and_export_matches(shards, tmp_path):
    cfg = _cfg(shards, tmp_path / "work")
    seen = []
    result = train(cfg, on_metrics=lambda step, m: seen.append(step))
    assert result.val_loss_before > 5.0  # ~ln(300) at random init
    assert result.val_loss_after < result.val_loss_before - 2.0
    assert seen[0] == 0 and seen[-1] == 40
    # Validation bits per byte: the same loss over the bytes the validated tokens spell.
    data, tokens = eval_window_bytes(TokenShards(shards).split("val"), 8, 4, token_bytes(shards / "tokenizer"))
    last = result.history[-1]
    assert last["val_bits_per_byte"] == pytest.approx(last["val_loss"] * tokens / math.log(2) / len(data), rel=1e-12)
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


# --------------------------------------------------------------------------- issue 7: presets, kill/resume, ranks, golden
@pytest.mark.parametrize("preset,expected", [("3b", 3.030e9), ("7b", 7.174e9), ("15b", 15.958e9)])
def test_paper_presets_have_the_released_parameter_counts(preset, expected):
    import torch
    from transformers import Starcoder2ForCausalLM

    from models.presets import PRESETS, starcoder2_config

    with torch.device("meta"):
        model = Starcoder2ForCausalLM(starcoder2_config(PRESETS[preset], 49152))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(expected, rel=2e-3)
    assert model.config.sliding_window == 4096 and model.config.tie_word_embeddings == (preset != "15b")


def _launch_cmd(cfg_path, result_path=None):
    import sys

    cmd = [sys.executable, "-m", "models.train", "--config", str(cfg_path)]
    return cmd + (["--result", str(result_path)] if result_path else [])


def _history(work):
    import json

    return [json.loads(line) for line in (work / "history.jsonl").read_text().splitlines()]


def test_sigkill_mid_run_then_resume_gives_the_same_losses(shards, tmp_path):
    import os
    import signal
    import subprocess
    import time

    kw = dict(max_steps=30, checkpoint_every=5, eval_every=10, torch_threads=1)
    reference = train(_cfg(shards, tmp_path / "ref", **kw))
    work = tmp_path / "killed"
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(_cfg(shards, work, **kw).model_dump_json())
    env = launcher_free_env()
    proc = subprocess.Popen(_launch_cmd(cfg_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (work / "history.jsonl").exists() and any(h["step"] >= 17 for h in _history(work)):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(h["step"] for h in _history(work))
    assert 17 <= killed_at < 30, killed_at
    resumed = subprocess.run(_launch_cmd(cfg_path), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _history(work)
    assert [h["step"] for h in after] == [h["step"] for h in reference.history]
    for a, b in zip(after, reference.history):
        for key in ("train_loss", "val_loss"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)


def test_two_ranks_match_one_rank_with_the_same_global_batch(shards, tmp_path):
    from models.launch import launch

    one = launch(_cfg(shards, tmp_path / "one", max_steps=12, micro_batch_size=8, zero_stage=2), num_processes=1)
    two = launch(_cfg(shards, tmp_path / "two", max_steps=12, micro_batch_size=4, zero_stage=2), num_processes=2)
    assert one.tokens_seen == two.tokens_seen
    losses_one = [h["train_loss"] for h in one.history if "train_loss" in h]
    losses_two = [h["train_loss"] for h in two.history if "train_loss" in h]
    assert losses_two == pytest.approx(losses_one, rel=2e-3)
    assert two.val_loss_after == pytest.approx(one.val_loss_after, rel=2e-3)


from tests.paths import ASSETS  # noqa: E402

GOLDEN = ASSETS / "golden_tiny_loss.json"


def test_golden_loss_curve_of_the_tiny_preset(shards, tmp_path):
    """The tiny preset on the fixed shard must reproduce the recorded curve (regressions in the
    model, data order, optimizer or schedule show up here). Regenerate with STARFLOW_WRITE_GOLDEN=1."""
    import json
    import os

    from models.presets import PRESETS

    cfg = _cfg(shards, tmp_path / "golden", shape=PRESETS["tiny"], max_steps=15, zero_stage=1, torch_threads=1,
               eval_every=5, lr=2e-3, warmup_steps=3)
    losses = [round(h["train_loss"], 5) for h in train(cfg).history if "train_loss" in h]
    if os.environ.get("STARFLOW_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"preset": "tiny", "steps": 15, "train_loss": losses}, indent=1))
    golden = json.loads(GOLDEN.read_text())["train_loss"]
    assert losses == pytest.approx(golden, rel=2e-3)
    assert losses[-1] < losses[0] - 1.0


def test_stage2_continues_from_stage1_weights(shards, tmp_path):
    s1 = _cfg(shards, tmp_path / "s1", max_steps=20)
    r1 = train(s1)
    export_hf(s1, r1.checkpoint_tag, tmp_path / "s1_export")
    s2 = s1.model_copy(update={
        "work_dir": str(tmp_path / "s2"), "data_stage": "stage2", "init_from": str(tmp_path / "s1_export"),
        "shape": SHAPE.replace(rope_theta=1e6),
        "hparams": s1.hparams.model_copy(update={"max_steps": 5, "lr": 3e-4, "warmup_steps": 1}),
    })
    r2 = train(s2)
    # Starting from stage 1's weights: far below a random init's loss (~ln 300 = 5.7) from step 0.
    assert r2.val_loss_before < r1.val_loss_before - 2.0
    out = export_hf(s2, r2.checkpoint_tag, tmp_path / "s2_export")
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).rope_parameters["rope_theta"] == 1e6


def test_ray_train_torchtrainer_two_workers(shards, tmp_path, ray_session):
    from models.launch import launch_ray

    result = launch_ray(_cfg(shards, tmp_path / "ray", max_steps=10, micro_batch_size=4, zero_stage=2), num_workers=2)
    assert result.tokens_seen == 10 * 4 * 32 * 2
    assert result.val_loss_after < result.val_loss_before - 0.5


def test_deepspeed_launcher_two_ranks(shards, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    cfg = _cfg(shards, tmp_path / "ds", max_steps=10, micro_batch_size=4)
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    launcher = Path(sys.executable).parent / "deepspeed"
    env = launcher_free_env()
    proc = subprocess.run(
        [str(launcher), "--num_accelerators", "2", "--master_port", "29533", "--module", "models.train",
         "--config", str(tmp_path / "cfg.json"), "--result", str(tmp_path / "result.json")],
        env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["tokens_seen"] == 10 * 4 * 32 * 2
    assert result["val_loss_after"] < result["val_loss_before"] - 0.5


def test_a_half_written_checkpoint_is_never_loaded(shards, tmp_path):
    work = tmp_path / "w"
    cfg = _cfg(shards, work, max_steps=20, checkpoint_every=10)
    train(cfg)
    for f in (work / "step20").glob("*optim_states.pt"):
        f.unlink()  # as if killed while writing step20
    resumed = train(cfg)
    assert resumed.resumed_from_step == 10
    assert [h["step"] for h in resumed.history if "train_loss" in h] == list(range(1, 21))
