"""Figures people would rather see than read: written as PNG, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_curve(history: list[dict[str, float]], path: Path,
               floors: dict[int, dict[str, float]] | None = None) -> Path:
    """Training and validation loss; below it validation bits per byte against gzip -9 and xz -9e
    on the same validation bytes (``floors``: training stage -> compressor -> bits per byte), so a
    reader sees where the model crosses them."""
    fig, (ax, ax_bpb) = plt.subplots(2, 1, sharex=True, figsize=(7, 6.5), height_ratios=[3, 2])
    train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if train:
        ax.plot(*zip(*train), label="train loss", alpha=0.6)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    starts = [h["step"] for prev, h in zip(history, history[1:]) if h.get("stage") != prev.get("stage")]
    for x in starts:
        for a in (ax, ax_bpb):
            a.axvline(x, color="grey", linestyle="--", linewidth=1)
        ax.text(x, ax.get_ylim()[1], " stage 2: long context", va="top", fontsize=8, color="grey")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    _bits_per_byte_panel(ax_bpb, history, floors or {})
    ax_bpb.set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bits_per_byte_panel(ax, history: list[dict[str, float]], floors: dict[int, dict[str, float]]) -> None:
    bpb = [(h["step"], h["val_bits_per_byte"]) for h in history if "val_bits_per_byte" in h]
    if bpb:
        ax.plot(*zip(*bpb), "o-", color="tab:red", label="model (validation)")
    for stage, figures in floors.items():
        steps = [h["step"] for h in history if h.get("stage", 1) == stage]
        if not steps:
            continue
        for name, style in (("gzip", ":"), ("xz", "--")):
            if name in figures:
                ax.hlines(figures[name], min(steps), max(steps), colors="black", linestyles=style,
                          label=f"{name} -9{'e' if name == 'xz' else ''}" if stage == min(floors) else None)
    ax.set_ylabel("bits per byte")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def bar_chart(counts: dict[str, int], title: str, path: Path) -> Path:
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(items) + 1)))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def language_distribution(by_language: dict[str, dict[str, int]], title: str, path: Path, top: int = 25) -> Path:
    """Files and megabytes per language, side by side (largest ``top`` by bytes; the rest summed)."""
    items = sorted(by_language.items(), key=lambda kv: kv[1]["bytes"], reverse=True)
    head, tail = items[:top], items[top:]
    if tail:
        head.append((f"{len(tail)} others", {"files": sum(v["files"] for _, v in tail), "bytes": sum(v["bytes"] for _, v in tail)}))
    head.reverse()
    names = [k for k, _ in head]
    fig, (ax_files, ax_bytes) = plt.subplots(1, 2, sharey=True, figsize=(10, max(2.5, 0.32 * len(head) + 1.2)))
    ax_files.barh(names, [v["files"] for _, v in head])
    ax_files.set_xlabel("files")
    ax_files.set_xscale("log")
    ax_bytes.barh(names, [v["bytes"] / 1e6 for _, v in head], color="tab:orange")
    ax_bytes.set_xlabel("MB")
    ax_bytes.set_xscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bits_per_byte_bars(model: float, compressors: dict[str, float], n_bytes: int, path: Path) -> Path:
    """The model's bits per byte beside each compressor's on the same validation bytes (lower is better)."""
    items = sorted(compressors.items(), key=lambda kv: kv[1])
    names = ["model", *(k for k, _ in items)]
    values = [model, *(v for _, v in items)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(names, values, color=["tab:red", *["tab:grey"] * len(items)])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title(f"validation: {n_bytes / 1e6:.2f} MB of held-out repositories")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
