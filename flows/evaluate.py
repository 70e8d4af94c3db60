"""Stage ``evaluate``: perplexity, sandboxed HumanEval pass@k, and registration in MLflow.

Before scoring the model, the canonical solutions run through the same sandbox
and must all pass (pass@1 = 1.0): a harness that fails them would report
meaningless numbers for any model.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import stage_dir
from models.generate import generate
from models.perplexity import perplexity
from ray_tasks import fim_eval
from ray_tasks.code_eval import score
from ray_tasks.humaneval import load_problems
from ray_tasks.ray_exec import ray_running
from ray_tasks.tables import AtomicDir

CHALLENGER = "challenger"


@flow(name="stage-evaluate")
def evaluate_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = params.evaluate
    model_dir = str(stage_dir("train") / "model")
    with tracking.stage_run("evaluate", params, parent_run_id) as run:
        ppl = perplexity(model_dir, str(stage_dir("tokenize")), params.train.micro_batch_size, cfg.perplexity_batches)
        problems = load_problems(cfg.humaneval.limit)
        with ray_running(params.ray.address, params.ray.num_cpus, params.ray.object_store_memory_mb):
            canonical, canonical_records = score(
                problems, [[p.canonical_solution] for p in problems], [1], cfg.sandbox.timeout_s, cfg.sandbox.memory_mb
            )
            if canonical["pass@1"] != 1.0:
                failed = [r["task_id"] for r in canonical_records if r["status"] != "passed"]
                raise RuntimeError(f"sandbox self-check failed: canonical solutions of {failed} did not pass")
            he = cfg.humaneval
            completions = generate(
                model_dir, [p.prompt for p in problems], he.max_new_tokens, he.num_samples, he.temperature, he.top_p,
                he.batch_size,
            )
            passk, records = score(problems, completions, he.ks, cfg.sandbox.timeout_s, cfg.sandbox.memory_mb)
            fim_em, fim_records = _fim_exact_match(model_dir, cfg)
        with AtomicDir(stage_dir("evaluate")) as out:
            _write_jsonl(out / "humaneval_samples.jsonl", records)
            _write_jsonl(out / "selfcheck.jsonl", canonical_records)
            _write_jsonl(out / "fim_samples.jsonl", fim_records)
        statuses = [r["status"] for r in records]
        stats = {
            "perplexity": ppl["perplexity"],
            "val_loss": ppl["val_loss"],
            "humaneval": {**passk, "problems": len(problems), "samples": len(records),
                          "timeouts": statuses.count("timeout"), "mode": "greedy" if he.temperature == 0 else "sampled"},
            "selfcheck_pass@1": canonical["pass@1"],
            "fim_exact_match": fim_em,
            "fim_examples": len(fim_records),
            "sandbox_network_isolated": bool(records and records[0]["network_isolated"]),
        }
        version = register_model(params, model_dir, run.info.run_id)
        stats["registered_model"] = {"name": params.mlflow.registered_model, "version": int(version), "alias": CHALLENGER}
        tracking.publish_metrics("evaluate", stats)
        log.info("evaluate: %s", stats)
    return stats


def _fim_exact_match(model_dir: str, cfg) -> tuple[float, list[dict]]:
    """Single-line infilling on the examples the tokenize stage cut from validation repositories."""
    examples = fim_eval.load_examples(stage_dir("tokenize") / "fim_eval.jsonl", cfg.fim.limit)
    if not examples:
        return 0.0, []
    prompts = [fim_eval.prompt(ex, cfg.fim.context_chars) for ex in examples]
    completions = generate(model_dir, prompts, cfg.fim.max_new_tokens, batch_size=cfg.humaneval.batch_size)
    return fim_eval.exact_match(examples, [c[0] for c in completions])


def register_model(params: Params, model_dir: str, run_id: str) -> str:
    """Log the HF export as a pyfunc model, register a new version, point ``challenger`` at it."""
    from mlflow.models import infer_signature

    from models.pyfunc import CodeCompletionModel

    signature = infer_signature(["def add(a, b):\n"], ["    return a + b\n"], params={"max_new_tokens": 64})
    info = mlflow.pyfunc.log_model(
        signature=signature,
        name="model",
        python_model=CodeCompletionModel(),
        artifacts={"hf_model": model_dir},
        registered_model_name=params.mlflow.registered_model,
        pip_requirements=["torch", "transformers", "tokenizers", "rich"],
    )
    version = info.registered_model_version
    MlflowClient().set_registered_model_alias(params.mlflow.registered_model, CHALLENGER, version)
    MlflowClient().set_model_version_tag(params.mlflow.registered_model, version, "evaluate_run_id", run_id)
    return str(version)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
