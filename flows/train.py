"""Stage ``train``: a StarCoder2 model trained with DeepSpeed on the packed shards, exported to HF format.

The runs (stage 1, then stage 2 from stage 1's weights) are built from ``params.train`` by
``models/run.py``; this flow runs them in-process, with torchrun or with Ray Train
(``models/launch.py``), logs them to MLflow and writes the stage's outputs.

Continued training (``train.init_from: champion`` or a version number): the flow resolves the
registered model version in the MLflow registry, downloads its HF export to
``.starflow/train/parent/`` and hands models/ that folder (models/ knows no registry). While no
version holds ``@champion`` the run trains from scratch and says so (a warning, the tag
``starflow.init_fallback``): a scheduled retrain configured once with ``champion`` must be able to
make the first model, which the gate then makes champion; a version number that does not exist is
an error, since it names one model. DVC does not see the registry: a promotion alone does not make
the stage stale; new data (or a changed param) does, and the run then continues from whichever
version is champion at that moment, recorded in the tags below and in ``training_data.json``.

Lineage: the export carries ``training_data.json`` (models/continuation.py: the shards it trained
on, its data version, its parent and the tags below under ``tags``); the train run is tagged
``starflow.init_from`` (``scratch`` or ``NAME/VERSION``), ``starflow.data_version`` (the DVC md5
of ``data/tokenize`` it trained on) and, when continued, ``starflow.parent.{model,version,alias,
run_id,train_run_id,data_version}``; it records the parent's data version as an MLflow dataset of
context ``parent`` and the parent's logged model as a model input.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prefect import flow, get_run_logger

from flows import plots, tracking
from flows.config import Params
from flows.workspace import WORK, metrics_file, stage_dir
from models.data import TokenShards
from models.launch import launch, launch_ray
from models.perplexity import eval_window_bytes, token_bytes
from models.continuation import RECORD_FILE, check_compatible, read_record, shard_entries, training_record
from models.run import Parent, TrainRun, deepspeed_config, stage_runs
from models.train import TrainResult, export_hf, train
from ray_tasks.evaluate.compressors import compressed_bits_per_byte
from ray_tasks.executor import init_ray
from ray_tasks.tables import AtomicDir


CHAMPION = "champion"
"""The promotion gate's alias (``flows/promotion.py: CHAMPION``; not imported, which would make
this stage depend on the gate's code)."""
HF_ARTIFACT = "hf_model"
"""The registered pyfunc's artifact holding the HF export (``flows/promotion.py: _log_model``,
``models/pyfunc.py``)."""
SHARDS = "data/tokenize"
"""The data this stage trains on, as dvc.yaml names it (its md5 is the data version)."""


@dataclass
class RegisteredParent:
    """The registered model version a continued run starts from, downloaded."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    """The version's source run (the evaluate run that registered it)."""
    model_id: str | None
    """Its MLflow logged model (``models:/m-...``), logged as the train run's model input."""
    model_dir: Path
    """Its HF export, downloaded."""
    record: dict | None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" + (f" (@{self.alias})" if self.alias else "")


@flow(name="stage-train")
def train_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    shards_dir = stage_dir("tokenize")
    tracking.setup_mlflow(params)
    parent, fallback = resolve_parent(params, log)
    if parent is not None:
        check_compatible(parent.model_dir, shards_dir, params.train.model.shape(), parent.label)
    runs = stage_runs(params.train, shards_dir, WORK / "train", params.tokenize.seq_len_stage2,
                      parent=Parent(model_dir=str(parent.model_dir), record=parent.record) if parent else None)
    data_version = tracking.data_versions(["train"], side="deps").get(SHARDS)
    tags = lineage_tags(parent, data_version, fallback)
    stats: dict = {"init": {"from": tags["starflow.init_from"], **({"fallback": fallback} if fallback else {})}}
    history: list[dict] = []
    with tracking.stage_run("train", params, parent_run_id, log_system_metrics=True) as mlflow_run:
        mlflow.set_tags(tags)
        if parent is not None:
            _log_parent_inputs(mlflow_run.info.run_id, parent)
        offset = 0
        for i, run in enumerate(runs, start=1):
            name = f"stage{i}"
            mlflow.log_dict(run.model_dump(mode="json"), f"{name}/train_config.json")
            mlflow.log_dict(deepspeed_config(run), f"{name}/ds_config.json")
            result = _run_stage(run, params.train.num_processes, offset, ray_cluster=_join_ray_cluster(params))
            history += [{**h, "step": h["step"] + offset, "stage": i} for h in result.history]
            stats[name] = {k: v for k, v in asdict(result).items() if k not in {"history", "checkpoint_dir"}}
            stats[name]["val_compressors"] = _compressors_on_eval_windows(run)
            if run.mix is not None:
                stats[name]["data_mix"] = mix_summary(run)
                log.info("train %s: %s", name, stats[name]["data_mix"])
            mlflow.log_metrics({f"{name}.val_bits_per_byte.{k}": v for k, v in stats[name]["val_compressors"].items()})
            offset += run.hparams.max_steps
            if i < len(runs):
                export_hf(run, result.checkpoint_tag, WORK / "train" / "stage1_export.tmp")
                _replace_dir(WORK / "train" / "stage1_export.tmp", Path(runs[i].init_from))
        final = runs[-1]
        with AtomicDir(stage_dir("train")) as out:
            export_hf(final, result.checkpoint_tag, out / "model")
            record = training_record(shards_dir, data_version, run_id=mlflow_run.info.run_id, tags=tags,
                                     parent=_parent_entry(parent), init_from=params.train.init_from)
            (out / "model" / RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
            _copy_checkpoint(Path(final.work_dir), result.checkpoint_tag, out / "checkpoint")
            for i, run in enumerate(runs, start=1):
                (out / f"ds_config.stage{i}.json").write_text(json.dumps(deepspeed_config(run), indent=2))
        _write_history(history, metrics_file("train_history").with_suffix(".csv"))
        vals = [h["val_loss"] for h in history if "val_loss" in h]
        bpb = [h["val_bits_per_byte"] for h in history if "val_bits_per_byte" in h]
        stats.update(
            steps=offset, val_loss_before=vals[0], val_loss_after=vals[-1], val_loss_drop=vals[0] - vals[-1],
            val_bits_per_byte_after=bpb[-1] if bpb else None,
            tokens_seen=sum(stats[f"stage{i}"]["tokens_seen"] for i in range(1, len(runs) + 1)),
            num_parameters=stats["stage1"]["num_parameters"], mlflow_run_id=mlflow_run.info.run_id,
        )
        tracking.publish_metrics("train", stats)
        mlflow.log_dict(record, RECORD_FILE)
        with tempfile.TemporaryDirectory() as tmp:
            floors = {i: stats[f"stage{i}"]["val_compressors"] for i in range(1, len(runs) + 1)}
            mlflow.log_artifact(str(plots.loss_curve(history, Path(tmp) / "loss_curve.png", floors)))
        log.info("train: val loss %.3f -> %.3f in %d steps", vals[0], vals[-1], offset)
    return stats


def resolve_parent(params: Params, log) -> tuple[RegisteredParent | None, str | None]:
    """The registered model version ``train.init_from`` names, downloaded; ``(None, reason)`` when
    it is ``champion`` and no version holds the alias yet (train from scratch); ``(None, None)`` for
    ``scratch``. A version number that does not exist is a ``ValueError``."""
    spec = params.train.init_from
    if not params.train.continues:
        return None, None
    client, name = MlflowClient(), params.mlflow.registered_model
    alias = CHAMPION if spec == CHAMPION else None
    where = mlflow.get_tracking_uri()
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        registered = None
    version = ((registered.aliases or {}).get(alias) if registered else None) if alias else spec
    if alias and version is None:
        reason = f"no version of {name!r} holds @{CHAMPION} in {where}"
        log.warning("train.init_from: champion, but %s yet: this run trains from scratch (the promotion gate "
                    "makes the first model champion, and later runs continue from it)", reason)
        return None, reason
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ValueError(f"train.init_from: {spec}: registered model {name!r} has no version {spec} in {where}"
                         + ("" if registered else " (no such registered model)")) from None
    model_dir = download_version(name, str(mv.version), WORK / "train" / "parent")
    source = str(mv.source or "")
    parent = RegisteredParent(name=name, version=str(mv.version), alias=alias, run_id=mv.run_id,
                              model_id=source.removeprefix("models:/") if source.startswith("models:/m-") else None,
                              model_dir=model_dir, record=read_record(model_dir))
    if parent.record is None:
        log.warning("%s has no %s (trained before records existed): every shard counts as new data",
                    parent.label, RECORD_FILE)
    log.info("train: continuing from %s (%s)", parent.label, model_dir)
    return parent, None


def download_version(name: str, version: str, root: Path) -> Path:
    """The HF export of a registered version, in ``root/NAME-vVERSION`` (downloaded once: a version's
    artifacts never change; a download is renamed into place only when complete). Other versions'
    copies are removed, so the folder holds one model however many versions continue."""
    dest = root / f"{name}-v{version}"
    for other in root.glob(f"{name}-v*"):
        if other != dest and other.is_dir():
            shutil.rmtree(other)
    if (dest / "config.json").exists():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
        hf = local / flavor["artifacts"][HF_ARTIFACT]["path"]
        shutil.rmtree(dest, ignore_errors=True)
        hf.rename(dest)
    return dest


def lineage_tags(parent: RegisteredParent | None, data_version: str | None, fallback: str | None) -> dict[str, str]:
    """The train run's lineage tags (also the registered version's: they go into the export's
    training_data.json, from which flows/evaluate.py copies them)."""
    tags = {"starflow.init_from": f"{parent.name}/{parent.version}" if parent else "scratch"}
    if data_version:
        tags["starflow.data_version"] = data_version
    if fallback:
        tags["starflow.init_fallback"] = fallback
    if parent is not None:
        record = parent.record or {}
        tags.update({"starflow.parent.model": parent.name, "starflow.parent.version": parent.version,
                     "starflow.parent.alias": parent.alias, "starflow.parent.run_id": parent.run_id,
                     "starflow.parent.train_run_id": record.get("run_id"),
                     "starflow.parent.data_version": record.get("data_version")})
    return {k: str(v) for k, v in tags.items() if v}


def mix_summary(run: TrainRun) -> dict:
    """How a continued run's stage draws: shards and sequences new and old, the replay share."""
    sequences = {e["file"]: e["sequences"] for e in shard_entries(run.shards_dir, run.data_stage)}
    mix = run.mix
    return {"new_shards": len(mix.new), "old_shards": len(mix.old),
            "new_sequences": sum(sequences[f] for f in mix.new), "old_sequences": sum(sequences[f] for f in mix.old),
            "replay_fraction": mix.effective_replay()}


def _parent_entry(parent: RegisteredParent | None) -> dict | None:
    if parent is None:
        return None
    record = parent.record or {}
    return {"name": parent.name, "version": parent.version, "alias": parent.alias, "run_id": parent.run_id,
            "train_run_id": record.get("run_id"), "data_version": record.get("data_version")}


def _log_parent_inputs(run_id: str, parent: RegisteredParent) -> None:
    """The parent's data version as a dataset of context ``parent`` (so a search by its md5 finds
    this run too: it replays that data) and the parent's logged model as this run's model input."""
    client = MlflowClient()
    if parent_data := (parent.record or {}).get("data_version"):
        tracking.log_datasets(client, run_id, {SHARDS: parent_data}, "parent")
    if parent.model_id:
        from mlflow.entities import LoggedModelInput

        client.log_inputs(run_id, models=[LoggedModelInput(parent.model_id)])


def _compressors_on_eval_windows(run: TrainRun) -> dict[str, float]:
    """gzip, bzip2, xz and zstd on the bytes the run validates on: the floor its validation bits per
    byte is drawn against (``val_bits_per_byte`` in the history is on exactly these bytes)."""
    hp = run.hparams
    val = TokenShards(run.shards_dir, run.data_stage).split("val")
    data, _ = eval_window_bytes(val, hp.micro_batch_size, hp.eval_batches, token_bytes(run.tokenizer_dir))
    return compressed_bits_per_byte(data)


def _run_stage(run: TrainRun, num_processes: int, offset: int, ray_cluster: bool = False) -> TrainResult:
    def on_metrics(step: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=step + offset)

    if num_processes > 1:
        result = launch_ray(run, num_processes) if ray_cluster else launch(run, num_processes)
        for h in result.history:
            on_metrics(int(h["step"]), {k: v for k, v in h.items() if k != "step"})
        return result
    return train(run, on_metrics)


def _join_ray_cluster(params: Params) -> bool:
    """Multi-process training goes through Ray Train when a Ray cluster is configured (``ray.address``);
    otherwise torchrun on this machine, and Ray is not started."""
    if not params.ray.address or params.train.num_processes <= 1:
        return False
    init_ray(params.ray)
    return True


def _replace_dir(src: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    src.rename(dest)


def _copy_checkpoint(work: Path, tag: str, dest: Path) -> None:
    """Keep the final DeepSpeed checkpoint (for continued training) beside the HF export."""
    dest.mkdir(parents=True)
    shutil.copytree(work / tag, dest / tag)
    (dest / "latest").write_text(tag)
    for f in ("run_config.json", "zero_to_fp32.py"):
        if (work / f).exists():
            shutil.copy2(work / f, dest / f)


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["step", "stage", "train_loss", "val_loss", "val_bits_per_byte", "lr", "grad_norm", "tokens_per_second"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)
