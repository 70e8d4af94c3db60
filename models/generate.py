"""Sampling completions from an exported (HF-format) model.

Prompts are left-padded and generated in batches; ``temperature == 0`` means
greedy decoding. Completions are returned raw: cutting at stop sequences is
the benchmark's business, not the model's.
"""

from __future__ import annotations

import torch
from rich.progress import Progress


def load(model_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    return model, tokenizer


@torch.no_grad()
def generate(
    model_dir: str,
    prompts: list[str],
    max_new_tokens: int,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 0.95,
    batch_size: int = 16,
    seed: int = 0,
) -> list[list[str]]:
    """``num_samples`` completions per prompt, in prompt order."""
    model, tokenizer = load(model_dir)
    torch.manual_seed(seed)
    max_ctx = model.config.max_position_embeddings - max_new_tokens
    jobs = [(i, p) for i, p in enumerate(prompts) for _ in range(num_samples)]
    out: list[list[str]] = [[] for _ in prompts]
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    with Progress(transient=True) as progress:
        task = progress.add_task("generating", total=len(jobs))
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            enc = tokenizer([p for _, p in chunk], return_tensors="pt", padding=True)
            # Keep the end of over-long prompts: the function signature is what matters.
            ids, mask = enc["input_ids"][:, -max_ctx:], enc["attention_mask"][:, -max_ctx:]
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling,
            )
            texts = tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=False)
            for (i, _), text in zip(chunk, texts):
                out[i].append(text)
            progress.advance(task, len(chunk))
    return out
