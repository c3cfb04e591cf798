"""Operators of ``<model>__train`` up to registration: fingerprint, validate, train, register.

Each is idempotent: it finds what an earlier attempt of the same DAG run did (by the MLflow run
tagged with the DAG run id) and does not do it twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import DataError, DataValidationError
from airflow_mlops.operators.base import MlopsBaseOperator, given
from airflow_mlops.ui.links import MlflowModelVersionLink, MlflowRunLink
from airflow_mlops.vocabulary import Alias, AssetKind, Tag, asset_uri

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class FingerprintDataOperator(MlopsBaseOperator):
    """Read the training data once, hash its content, and open (or find) this DAG run's MLflow run.

    The run carries the lineage tags; later tasks re-read the data and refuse it if the hash changed.
    Wire the later tasks with ``mlflow_run_id=XComArg(fingerprint, key="mlflow_run_id")`` (with
    ``multiple_outputs=True``) or let them find the run by the DAG run id.

    A run started by drift events alone skips (and with it the rest of the DAG run) when retraining is moot:
    each event is duplicated (another DAG run already retrained for its monitoring run, recorded as
    ``mlops.retrained_for_drift``) or late (it judged a champion that has been replaced since).

    :param data_uri: Training data (templated): a file or folder URI; default: the run's ``data_uri``
        param, else the config's ``data.uri``. A triggering new-data Asset event's ``data_uri`` wins.
        A value given here is trusted as the DAG author's; a ``data_uri`` from ``conf`` or an Asset event
        is admitted only under the config's data folder or ``[mlops] data_roots`` (so do not template
        ``conf`` into this argument: leave it unset and the operator reads and checks ``conf`` itself).
    :param data_conn_id: Airflow connection for an object-store ``data_uri`` (templated); from ``conf`` or an
        Asset event only the config's ``data.conn_id`` or one of ``[mlops] data_conn_ids``.
    :return: ``{"mlflow_run_id", "data_uri", "data_files", "data_sha256", "rows"}``.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "data_uri", "data_conn_id")

    def __init__(self, *, data_uri: str | None = None, data_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_uri = data_uri
        self.data_conn_id = data_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        import json

        from airflow_mlops.config.schema import parse_duration
        from airflow_mlops.data.snapshot import choose_files, read_snapshot
        from airflow_mlops.lineage import code_version, lineage_tags
        from airflow_mlops.registry.versions import find_or_create_run

        uri, conn_id = self.data_location(context, given(self.data_uri), given(self.data_conn_id))
        cfg = self.loaded.config
        window = parse_duration(cfg.retraining.window) if cfg.retraining.window is not None else None
        drift_runs = drift_event_runs(self.model, context.get("triggering_asset_events"))
        with self.hook.activate() as client:
            existing = self.existing_run(client, context)
            if existing is None and drift_runs is not None:  # a retry of a run that started is never skipped
                moot = self.moot_drift(client, context, drift_runs)
                if moot:
                    from airflow.sdk.exceptions import AirflowSkipException

                    raise AirflowSkipException(f"{self.model}: not retraining: {moot}")
            existing_tags = client.get_run(existing).data.tags if existing else {}
            self.check_config_unchanged(existing_tags.get(Tag.CONFIG_SHA256), context)
            recorded_files = existing_tags.get(Tag.DATA_FILES)
            # a retry re-reads the files the first attempt chose, even if newer ones landed since
            files = tuple(json.loads(recorded_files)) if recorded_files else choose_files(uri, conn_id, window)
            snapshot = read_snapshot(files, conn_id, cfg.data.format)
            sha = snapshot.sha256
            tags = lineage_tags(
                data_uri=uri,
                data_sha256=sha,
                config_sha256=self.loaded.sha256,
                code=code_version(self.loaded.path),
                seed=cfg.estimator.seed,
                dag_run_id=self.dag_run_id(context),
            )
            tags[Tag.DATA_CONN_ID] = conn_id or ""
            tags[Tag.DATA_FILES] = json.dumps(list(files))
            tags[Tag.CONFIG_PATH] = str(self.loaded.path)
            retrained_for = sorted(
                {e["monitoring_run_id"] for e in drift_runs or [] if _is_run_id(e.get("monitoring_run_id"))}
            )
            if retrained_for:
                tags[Tag.RETRAINED_FOR_DRIFT] = ",".join(retrained_for)
            run_id = find_or_create_run(client, cfg.name, self.dag_run_id(context), tags, self.hook.artifact_root)
            recorded = client.get_run(run_id).data.tags.get(Tag.DATA_SHA256)
            if recorded and recorded != sha:
                raise DataError(
                    f"{uri}: content changed since this DAG run first read it (sha256 {recorded} -> {sha}); "
                    "start a new DAG run instead of re-running this one"
                )
        self.log.info(
            "Data %s (%d file(s), %d rows): sha256 %s; MLflow run %s", uri, len(files), len(snapshot.frame), sha, run_id
        )
        return {
            "data_uri": uri,
            "data_files": list(files),
            "data_sha256": sha,
            "rows": len(snapshot.frame),
            "mlflow_run_id": run_id,
        }

    def moot_drift(self, client: Any, context: Context, events: list[dict[str, Any]]) -> str | None:
        """Why retraining for these drift events is moot, or ``None`` to train.

        Moot when every event is late (it judged a champion that has been replaced since: the finding is about a
        model no longer serving) or duplicated (a training run of another DAG run already retrained for the same
        monitoring run). An event without a usable monitoring run id is never moot.
        """
        from airflow_mlops.registry.versions import alias_version

        champion = alias_version(client, self.model, Alias.CHAMPION)
        reasons = []
        for event in events:
            monitoring_run, judged = event.get("monitoring_run_id"), event.get("champion")
            if not _is_run_id(monitoring_run):
                return None
            if judged is not None and champion is not None and str(judged) != champion:
                reasons.append(
                    f"the drift event of monitoring run {monitoring_run} judged champion v{judged}, and v{champion} "
                    "is the champion now (a late event)"
                )
                continue
            handled = [
                run for run in self._retrained_for(client, str(monitoring_run)) if run != self.dag_run_id(context)
            ]
            if not handled:
                return None
            reasons.append(
                f"the drift event of monitoring run {monitoring_run} was already handled by DAG run {handled[0]!r} "
                "(a duplicated event; re-run that DAG run to retrain again)"
            )
        return "; ".join(reasons)

    def _retrained_for(self, client: Any, monitoring_run: str) -> list[str]:
        """DAG runs whose training run was started for the drift finding of ``monitoring_run``."""
        from airflow_mlops.registry.versions import experiment_name

        experiment = client.get_experiment_by_name(experiment_name(self.model))
        if experiment is None:
            return []
        runs = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{Tag.RETRAINED_FOR_DRIFT}` LIKE '%{monitoring_run}%'"
        )
        return [str(run.data.tags.get(Tag.DAG_RUN_ID)) for run in runs]


def _is_run_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value) is not None


def drift_event_runs(model: str, events: Any) -> list[dict[str, Any]] | None:
    """The extras of the drift events that triggered this run; ``None`` unless drift events alone triggered it
    (a new-data event, a schedule or a manual run always trains)."""
    drift_uri, found, other = asset_uri(model, AssetKind.DRIFT), [], False
    for key, asset_events in (events or {}).items():
        for event in asset_events:
            if getattr(key, "uri", key) == drift_uri:
                found.append(dict(getattr(event, "extra", None) or {}))
            else:
                other = True
    return found if found and not other else None


class ValidateDataOperator(MlopsBaseOperator):
    """Validate the data with the config's expectations; the result is an MLflow artifact.

    A failed expectation fails the task with each failing expectation listed; nothing is trained.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        import mlflow

        from airflow_mlops.validation.expectations import validate_frame

        cfg = self.loaded.config
        with self.hook.activate() as client:
            run_id = self.run_id(client, context)
            frame = self.read_verified_data(client, run_id)
            outcome = validate_frame(frame, list(cfg.expectations), suite_name=f"{cfg.name}-training-data")
            with mlflow.start_run(run_id=run_id):
                mlflow.log_text(outcome.raw_json, "validation/expectations.json")
                mlflow.set_tag(Tag.VALIDATION, "passed" if outcome.success else "failed")
                mlflow.log_metric("validation.failed_expectations", len(outcome.failures))
            if not outcome.success:
                client.set_terminated(run_id, status="FAILED")
                uri = client.get_run(run_id).data.tags[Tag.DATA_URI]
                raise DataValidationError(outcome.failure_message(uri))
        self.log.info("All %d expectations passed (%d rows)", len(outcome.results), len(frame))
        return {"mlflow_run_id": run_id, "expectations": len(outcome.results), "rows": len(frame)}


class TrainModelOperator(MlopsBaseOperator):
    """Fit the configured pipeline and log params, metrics, predictions and the model to the run.

    The model is saved and hashed locally before upload. The run is tagged with that digest
    (``mlops.trained_model_sha256``), and, when ``[mlops] model_signing_conn_id`` is set, with its
    signature (``mlops.model_hmac``). Registration checks the registry's copy against both.
    If this DAG run's MLflow run already holds a trained model, it is reused, not trained again.
    """

    operator_extra_links = (MlflowRunLink(),)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.registry.signing import SigningKeyError, configured_key, sign
        from airflow_mlops.training.trainer import fit_and_evaluate, log_training

        cfg = self.loaded.config
        with self.hook.activate() as client:
            run_id = self.run_id(client, context)
            run = client.get_run(run_id)
            if run.data.tags.get(Tag.VALIDATION) != "passed":
                raise DataValidationError(f"MLflow run {run_id}: data validation did not pass; refusing to train")
            if Tag.MODEL_URI in run.data.tags:
                self.log.info("Run %s already holds model %s; not training again", run_id, run.data.tags[Tag.MODEL_URI])
                return {"mlflow_run_id": run_id, "model_uri": run.data.tags[Tag.MODEL_URI], "metrics": run.data.metrics}
            try:
                key = configured_key()  # before training: a missing key should not cost a training
            except SigningKeyError as exc:
                raise SigningKeyError(f"{self.model} (MLflow run {run_id}): cannot sign the model: {exc}") from exc
            frame = self.read_verified_data(client, run_id)
            outcome = fit_and_evaluate(frame, cfg)
            lineage = {k: v for k, v in run.data.tags.items() if k.startswith(Tag.PREFIX) and k != Tag.VALIDATION}
            logged = log_training(outcome, cfg, run_id, lineage)
            client.set_tag(run_id, Tag.MODEL_ID, logged.model_id)
            client.set_tag(run_id, Tag.TRAINED_MODEL_SHA256, logged.sha256)
            if key is not None:
                client.set_tag(run_id, Tag.MODEL_HMAC, sign(key, self.model, logged.sha256))
            client.set_tag(run_id, Tag.MODEL_URI, logged.uri)  # last: marks training complete
        self.log.info("Trained %s: %s; model sha256 %s", cfg.trainer, outcome.metrics, logged.sha256)
        return {"mlflow_run_id": run_id, "model_uri": logged.uri, "metrics": outcome.metrics}


class RegisterModelOperator(MlopsBaseOperator):
    """Register the run's model as a new version with the lineage tags; a re-run returns the same version.

    Before the version gets ``mlops.model_sha256``, the registry's copy must hash to the digest training
    computed before upload (and, with signing on, the run's signature must verify). Otherwise the task fails
    with ``ModelIntegrityError``, and the version, left without a checksum, is never loaded.
    A run with no recorded digest (trained by an older airflow-mlops) is refused: fail closed.
    """

    operator_extra_links = (MlflowRunLink(), MlflowModelVersionLink())

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.lineage import LINEAGE_KEYS
        from airflow_mlops.registry.checksum import record_checksum
        from airflow_mlops.registry.signing import SigningKeyError, configured_key
        from airflow_mlops.registry.versions import register_version

        with self.hook.activate() as client:
            run_id = self.run_id(client, context)
            run = client.get_run(run_id)
            model_uri = run.data.tags.get(Tag.MODEL_URI)
            if not model_uri:
                raise DataError(f"MLflow run {run_id} has no trained model; run train_model first")
            try:
                key = configured_key()
            except SigningKeyError as exc:
                raise SigningKeyError(f"{self.model} (MLflow run {run_id}): cannot verify the model: {exc}") from exc
            tags = {k: run.data.tags[k] for k in LINEAGE_KEYS if k in run.data.tags}
            tags[Tag.MLFLOW_RUN_ID] = run_id
            tags.update(
                {k: run.data.tags[k] for k in (Tag.DATA_FILES, Tag.DATA_CONN_ID, Tag.CLASSES) if k in run.data.tags}
            )
            tags.update({k: v for k, v in run.data.tags.items() if k.startswith(Tag.ENV_PREFIX)})
            version, created = register_version(
                client, self.model, run_id, model_uri, run.data.tags.get(Tag.MODEL_ID), tags
            )
            checksum = record_checksum(client, self.model, version, run_id, run.data.tags, key)
        self.log.info(
            "%s %s v%s from run %s (sha256 %s)",
            "Registered" if created else "Found",
            self.model,
            version,
            run_id,
            checksum,
        )
        return {"mlflow_run_id": run_id, "version": version, "created": created}
