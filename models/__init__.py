"""The torch side of StarFlow: StarCoder2 presets, shard loading, DeepSpeed
training, checkpoints and HF export, generation and perplexity.

Reads the tokenize stage's shards and tokenizer by their file format; imports
neither ``flows`` nor ``ray_tasks``.
"""
