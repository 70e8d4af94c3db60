"""Validation perplexity of an exported model on the packed validation shard."""

from __future__ import annotations

import math

import torch

from models.data import TokenShards, sequential_batches


@torch.no_grad()
def perplexity(model_dir: str, shards_dir: str, batch_size: int, max_batches: int) -> dict[str, float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    val = TokenShards(shards_dir).split("val")
    total, tokens = 0.0, 0
    for batch in sequential_batches(val, batch_size, max_batches):
        loss = model(input_ids=batch, labels=batch).loss.item()
        n = batch.shape[0] * (batch.shape[1] - 1)  # labels are shifted: seq_len-1 predictions per row
        total += loss * n
        tokens += n
    mean = total / tokens
    return {"val_loss": mean, "perplexity": math.exp(mean), "tokens": tokens}
