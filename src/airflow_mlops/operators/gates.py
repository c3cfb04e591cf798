"""``GateModelOperator``: evaluate the registered candidate against the config's gates (fail closed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import GateFailedError
from airflow_mlops.operators.base import MlopsBaseOperator
from airflow_mlops.ui.links import MlflowModelVersionLink, MlflowRunLink
from airflow_mlops.vocabulary import Alias, Tag

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

GATE_REPORT_JSON = "gate/gate_report.json"
GATE_REPORT_MD = "gate/gate_report.md"


class GateModelOperator(MlopsBaseOperator):
    """Run thresholds, champion comparison, behaviour cases and slice checks on the held-out rows.

    The report (JSON + markdown) becomes an artifact of the run and the version is tagged
    ``mlops.gate=passed|failed``. Any error inside the gate is a failed gate. On failure the task
    fails with the report's location, and no alias moves.
    """

    #: The run holds the gate report; a failed gate links to it too (``mlflow_link_info``).
    operator_extra_links = (MlflowRunLink(), MlflowModelVersionLink())

    def execute(self, context: Context) -> dict[str, Any]:
        import mlflow

        from airflow_mlops.gates.checks import GateInputs, HoldOut, evaluate_gate
        from airflow_mlops.gates.report import CheckResult, GateReport
        from airflow_mlops.registry.versions import alias_version, version_for_run
        from airflow_mlops.training.trainer import split_data

        cfg = self.loaded.config
        name = self.model
        with self.hook.activate() as client:
            run_id = self.run_id(client, context)
            registered = version_for_run(client, name, run_id)
            version = str(registered.version) if registered else None
            self.mlflow_link_info = {"mlflow_run_id": run_id, "version": version}
            try:
                if registered is None:
                    raise GateFailedError(f"no registered version for MLflow run {run_id}")
                split = split_data(self.read_verified_data(client, run_id), cfg)
                candidate = mlflow.sklearn.load_model(f"models:/{name}/{version}")
                champion_version = alias_version(client, name, Alias.CHAMPION)
                champion = None
                if champion_version is not None and champion_version != version:
                    champion = mlflow.sklearn.load_model(f"models:/{name}/{champion_version}")
                elif champion_version == version:
                    champion_version = None
                report = evaluate_gate(
                    GateInputs(
                        config=cfg,
                        holdout=HoldOut(split.x_test, split.y_test),
                        candidate=candidate,
                        champion=champion,
                        champion_version=champion_version,
                        behaviour_cases=self._behaviour_cases,
                    ),
                    model=name,
                    version=version,
                    run_id=run_id,
                )
            except Exception as exc:
                report = GateReport(model=name, version=version, run_id=run_id)
                report.checks.append(CheckResult("gate", "gate", "error", detail=f"{type(exc).__name__}: {exc}"))
            result = "passed" if report.passed else "failed"
            with mlflow.start_run(run_id=run_id):
                mlflow.log_text(report.to_json(), GATE_REPORT_JSON)
                mlflow.log_text(report.to_markdown(), GATE_REPORT_MD)
                mlflow.set_tag(Tag.GATE, result)
            artifact_uri = client.get_run(run_id).info.artifact_uri
            location = f"{artifact_uri}/{GATE_REPORT_MD}"
            if version is not None:
                client.set_model_version_tag(name, version, Tag.GATE, result)
                client.set_model_version_tag(name, version, Tag.GATE_REPORT, location)
        self.log.info("Gate report for %s v%s:\n%s", name, version, report.to_markdown())
        if not report.passed:
            failed = "; ".join(f"{c.name} ({c.status}: {c.value} vs {c.threshold} {c.detail})" for c in report.failures)
            raise GateFailedError(f"{name} v{version} failed its gate: {failed}. Report: {location}")
        self.log.info("Gate passed; report at %s", location)
        return {"version": version, "gate": result, "report": location, "mlflow_run_id": run_id}

    def _behaviour_cases(self) -> tuple[pd.DataFrame, str]:
        from airflow_mlops.data.io import read_table

        behaviour = self.loaded.config.gates.behaviour
        assert behaviour is not None
        location = self.loaded.resolve(behaviour.cases)
        frame, _ = read_table(location, None, "csv")
        return frame, location
