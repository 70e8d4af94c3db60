"""Stage ``evaluate``: perplexity, bits per byte against compressors, sandboxed pass@k (HumanEval,
MBPP-format), FIM, promotion.

Bits per byte is scored on the validation token stream and gzip, bzip2, xz and zstd are run on
the very bytes those tokens decode to (``models/perplexity.py``, ``ray_tasks/evaluate/compressors.py``),
so the model and the compressors are compared on the same held-out text; a bar plot goes to MLflow.

Before scoring the model, the canonical HumanEval solutions run through the same sandbox
and must all pass (pass@1 = 1.0): a harness that fails them would report meaningless
numbers for any model. Every program runs in ``ray_tasks/evaluate/sandbox.py``, on Ray
tasks or in this process as ``ray_tasks.executor.executor_session`` decides (``params.ray``;
the results are the same).

The model is then registered in MLflow with alias ``challenger`` and goes through the
promotion gate (``flows/promotion.py``): it becomes ``champion`` only if its gate metric
beats the champion's by the configured margin.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger

from flows import plots, tracking
from flows.config import Params
from flows.promotion import CHALLENGER, mark_challenger, run_gate
from flows.workspace import stage_dir
from models.generate import generate
from models.perplexity import perplexity, score_validation_stream
from ray_tasks.attribution.trace import Attribution
from ray_tasks.evaluate import fim_eval
from ray_tasks.evaluate.code_eval import per_problem, score, score_generations
from ray_tasks.evaluate.compressors import compressed_bits_per_byte
from ray_tasks.evaluate.humaneval import Problem, load_problems
from ray_tasks.evaluate.mbpp import load_mbpp
from ray_tasks.evaluate.params import EvaluateParams
from ray_tasks.evaluate.sandbox import isolation_report
from ray_tasks.executor import executor_session, local_workers
from ray_tasks.tables import AtomicDir


@flow(name="stage-evaluate")
def evaluate_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = params.evaluate
    model_dir = str(stage_dir("train") / "model")
    with tracking.stage_run("evaluate", params, parent_run_id) as run:
        ppl = perplexity(model_dir, str(stage_dir("tokenize")), params.train.micro_batch_size, cfg.perplexity_batches)
        bpb = _bits_per_byte(model_dir, params.train.micro_batch_size, cfg)
        problems = load_problems(cfg.humaneval.limit)
        mbpp = load_mbpp(cfg.mbpp.path, cfg.mbpp.limit) if cfg.mbpp.path else []
        workers = local_workers(params.ray)
        with executor_session(params.ray) as use_ray:
            canonical, canonical_records = score(
                problems, [[p.canonical_solution] for p in problems], [1], cfg.sandbox,
                use_ray=use_ray, local_workers=workers,
            )
            if canonical["pass@1"] != 1.0:
                failed = [r["task_id"] for r in canonical_records if r["status"] != "passed"]
                raise RuntimeError(f"sandbox self-check failed: canonical solutions of {failed} did not pass")
            passk, records = _code_benchmark(model_dir, problems, cfg, use_ray, workers)
            mbpp_passk, mbpp_records = _code_benchmark(model_dir, mbpp, cfg, use_ray, workers) if mbpp else ({}, [])
        fim_em, fim_records = _fim_exact_match(model_dir, cfg)
        with AtomicDir(stage_dir("evaluate")) as out:
            _write_jsonl(out / "humaneval_samples.jsonl", records)
            _write_jsonl(out / "humaneval_problems.jsonl", per_problem(records, cfg.humaneval.ks))
            _write_jsonl(out / "selfcheck.jsonl", canonical_records)
            _write_jsonl(out / "fim_samples.jsonl", fim_records)
            if mbpp_records:
                _write_jsonl(out / "mbpp_samples.jsonl", mbpp_records)
                _write_jsonl(out / "mbpp_problems.jsonl", per_problem(mbpp_records, cfg.humaneval.ks))
        he = cfg.humaneval
        isolation = isolation_report()
        stats = {
            "perplexity": ppl["perplexity"],
            "val_loss": ppl["val_loss"],
            **bpb,
            "humaneval": {**passk, **_counts(records), "problems": len(problems),
                          "mode": "greedy" if he.temperature == 0 else "sampled"},
            "selfcheck_pass@1": canonical["pass@1"],
            "fim_exact_match": fim_em,
            "fim_examples": len(fim_records),
            "sandbox_network_isolated": bool(canonical_records and canonical_records[0]["network_isolated"]),
            "sandbox_isolation": {k: v for k, v in isolation.items() if isinstance(v, (bool, str)) or k == "landlock_abi"},
        }
        stats["memorisation"] = _memorisation(params, records, fim_records)
        if mbpp:
            stats["mbpp"] = {**mbpp_passk, **_counts(mbpp_records), "problems": len(mbpp)}
        version = register_model(params, model_dir, run.info.run_id)
        tracking.link_model_version(params, version)
        stats["registered_model"] = {"name": params.mlflow.registered_model, "version": int(version), "alias": CHALLENGER}
        decision = run_gate(MlflowClient(), params.mlflow.registered_model, version, stats, cfg.gate, run.info.run_id)
        stats["promotion"] = {"promoted": decision.promoted, "metric": decision.metric,
                              "challenger_score": decision.challenger_score, "champion_score": decision.champion_score,
                              "champion_version": decision.champion_version, "reason": decision.reason}
        tracking.publish_metrics("evaluate", stats)
        tracking.publish_results("evaluate", stats)
        log.info("evaluate: %s", stats)
    return stats


def _bits_per_byte(model_dir: str, batch_size: int, cfg: EvaluateParams) -> dict:
    """The model's bits per byte on the validation stream and the compressors' on the same bytes;
    the bar plot goes to MLflow."""
    scored = score_validation_stream(model_dir, str(stage_dir("tokenize")), batch_size, cfg.bits_per_byte_tokens)
    summary = scored.summary()
    compressors = compressed_bits_per_byte(scored.data)
    with tempfile.TemporaryDirectory() as tmp:
        png = plots.bits_per_byte_bars(summary["bits_per_byte"], compressors, len(scored.data),
                                       Path(tmp) / "bits_per_byte.png")
        mlflow.log_artifact(str(png))
    return {"bits_per_byte": summary["bits_per_byte"], "compressors": compressors,
            "bits_per_byte_scored": {k: v for k, v in summary.items() if k != "bits_per_byte"}}


def _code_benchmark(model_dir: str, problems: list[Problem], cfg: EvaluateParams, use_ray: bool,
                    local_workers: int) -> tuple[dict[str, float], list[dict]]:
    """Generate (the harness's prompts, stop sequences and sampling settings), then execute."""
    he = cfg.humaneval
    stops = sorted({s for p in problems for s in p.stops})
    completions = generate(model_dir, [p.generation_prompt(he.strip_prompt) for p in problems], he.max_new_tokens,
                           he.batch_size, sampling=he, stop=stops)
    return score_generations(problems, completions, he.ks, cfg.sandbox, strip_prompt=he.strip_prompt,
                             use_ray=use_ray, local_workers=local_workers)


def _counts(records: list[dict]) -> dict[str, int]:
    statuses = [r["status"] for r in records]
    return {"samples": len(records), "passed": statuses.count("passed"), "timeouts": statuses.count("timeout")}


def _fim_exact_match(model_dir: str, cfg: EvaluateParams) -> tuple[float, list[dict]]:
    """Single-line infilling on the examples the tokenize stage cut from validation repositories."""
    examples = fim_eval.load_examples(stage_dir("tokenize") / "fim_eval.jsonl", cfg.fim.limit)
    if not examples:
        return 0.0, []
    prompts = [fim_eval.prompt(ex, cfg.fim.context_chars) for ex in examples]
    completions = generate(model_dir, prompts, cfg.fim.max_new_tokens, cfg.humaneval.batch_size,
                           stop=["\n", *fim_eval.STOP_SEQUENCES])
    return fim_eval.exact_match(examples, [c[0] for c in completions])


def _memorisation(params: Params, records: list[dict], fim_records: list[dict]) -> dict:
    """Share of the generated characters (HumanEval and FIM completions) found verbatim in the training
    data, by the attribution stage's index (portrait first pass, verified in the full text)."""
    att = Attribution.open(stage_dir("attribution"), params.attribution)
    humaneval = att.memorised([r["completion"] for r in records])
    fim = att.memorised([r["got"] for r in fim_records])
    chars = humaneval["chars"] + fim["chars"]
    matched = humaneval["memorised_chars"] + fim["memorised_chars"]
    return {"share": round(matched / chars, 6) if chars else 0.0, "chars": chars, "memorised_chars": matched,
            "humaneval_share": humaneval["share"], "fim_share": fim["share"],
            "samples_with_match": humaneval["samples_with_match"] + fim["samples_with_match"],
            "data_version": att.manifest.get("data_version")}


def register_model(params: Params, model_dir: str, run_id: str) -> str:
    """Log the HF export as a pyfunc model, register a new version, point ``challenger`` at it."""
    from mlflow.models import infer_signature

    from models.pyfunc import CodeCompletionModel

    signature = infer_signature(["def add(a, b):\n"], ["    return a + b\n"],
                                params={"max_new_tokens": 64, "temperature": 0.0, "top_p": 0.95})
    info = mlflow.pyfunc.log_model(
        signature=signature,
        name="model",
        python_model=CodeCompletionModel(),
        artifacts={"hf_model": model_dir},
        registered_model_name=params.mlflow.registered_model,
        pip_requirements=["torch", "transformers", "tokenizers", "rich"],
    )
    version = str(info.registered_model_version)
    mark_challenger(MlflowClient(), params.mlflow.registered_model, version, run_id)
    return version


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
