"""Sampling completions from an exported (HF-format) model.

Prompts are left-padded and generated in batches; ``temperature == 0`` means
greedy decoding, otherwise nucleus sampling (temperature, top-p), ``num_samples`` per
prompt. Generation of a sequence ends at EOS, at ``max_new_tokens`` or as soon as its
text contains one of the benchmark's ``stop`` sequences (the harness's stopping rule,
so a batch does not run to ``max_new_tokens`` for nothing). Completions are returned
raw: cutting at the stop sequence is the benchmark's business, not the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from rich.progress import Progress
from transformers import StoppingCriteria, StoppingCriteriaList


class StopOnSequences(StoppingCriteria):
    """Per sequence: done once the generated text (after the prompt) contains a stop string."""

    def __init__(self, tokenizer, stops: list[str], prompt_len: int):
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=False)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], dtype=torch.bool, device=input_ids.device)


class Sampling(Protocol):
    """What ``generate`` reads of a sampling setup. The evaluate stage passes its ``humaneval``
    params, which have these fields, so the settings are not copied into another object."""

    num_samples: int
    temperature: float
    top_p: float
    seed: int


@dataclass(frozen=True)
class Decoding:
    """A sampling setup made by hand: greedy decoding, or one request to the served model."""

    num_samples: int
    temperature: float
    top_p: float
    seed: int


GREEDY = Decoding(num_samples=1, temperature=0.0, top_p=1.0, seed=0)
"""One completion per prompt, the most likely tokens (what single-line FIM is scored with)."""


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
    batch_size: int,
    sampling: Sampling = GREEDY,
    stop: list[str] | None = None,
) -> list[list[str]]:
    """``sampling.num_samples`` completions per prompt, in prompt order."""
    model, tokenizer = load(model_dir)
    num_samples, temperature, top_p = sampling.num_samples, sampling.temperature, sampling.top_p
    torch.manual_seed(sampling.seed)
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
            criteria = StoppingCriteriaList([StopOnSequences(tokenizer, stop, ids.shape[1])]) if stop else None
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, stopping_criteria=criteria,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling,
            )
            texts = tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=False)
            for (i, _), text in zip(chunk, texts):
                out[i].append(text)
            progress.advance(task, len(chunk))
    return out
