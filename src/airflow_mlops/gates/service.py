"""Gate one registered version: evaluate, record the report, tag the version — fail closed, no Airflow.

``GateModelOperator`` is a thin wrapper over :func:`gate_version`. The candidate and the champion are
unpickled only after their artifacts matched the checksum recorded at registration, and, with
``[mlops] model_signing_conn_id`` set, after that checksum's signature verified
(:func:`~airflow_mlops.registry.checksum.load_verified_sklearn`); any error on the way — a missing
version, unreadable data, a checksum or signature mismatch, an unreadable signing key, a check that
raises — is a failed gate with the error in its report. Everything is written through the given
``MlflowClient`` (no process-wide tracking URI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ConfigError, GateFailedError
from airflow_mlops.gates.report import CheckResult, GateReport
from airflow_mlops.vocabulary import Alias, Tag

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from airflow_mlops.config.loader import LoadedConfig

__all__ = ["GATE_REPORT_JSON", "GATE_REPORT_MD", "GateOutcome", "behaviour_cases", "gate_version"]

GATE_REPORT_JSON = "gate/gate_report.json"
GATE_REPORT_MD = "gate/gate_report.md"


@dataclass(frozen=True)
class GateOutcome:
    """The gate's verdict on one version and where its report is."""

    report: GateReport
    run_id: str
    version: str | None
    location: str

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def result(self) -> str:
        return "passed" if self.passed else "failed"

    def failure(self) -> GateFailedError:
        """The error a failed gate raises: each failed check with its value and threshold, and the report."""
        failed = "; ".join(
            f"{c.name} ({c.status}: {c.value} vs {c.threshold} {c.detail})" for c in self.report.failures
        )
        return GateFailedError(
            f"{self.report.model} v{self.version} failed its gate: {failed}. Report: {self.location}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "gate": self.result, "report": self.location, "mlflow_run_id": self.run_id}


def behaviour_cases(loaded: LoadedConfig) -> tuple[pd.DataFrame, str]:
    """The config's behaviour cases (a CSV next to the config or at a URI) and their location."""
    from airflow_mlops.data.io import read_table

    behaviour = loaded.config.gates.behaviour
    if behaviour is None:
        raise ConfigError(f"{loaded.path}: gates.behaviour: not set, so there are no behaviour cases to read")
    location = loaded.resolve(behaviour.cases)
    frame, _ = read_table(location, None, "csv")
    return frame, location


def gate_version(
    client: MlflowClient,
    loaded: LoadedConfig,
    run_id: str,
    read_data: Callable[[], pd.DataFrame],
    *,
    model: str | None = None,
) -> GateOutcome:
    """Gate the version registered from ``run_id`` against the config's gates and the current champion.

    :param read_data: Returns the run's training data, verified against its fingerprint (split here
        exactly as training split it, so the held-out rows are the ones the model never saw).
    :param model: The registered model name (default: the config's ``name``).
    """
    from airflow_mlops.registry.versions import version_for_run

    name = model or loaded.name
    registered = version_for_run(client, name, run_id)
    version = str(registered.version) if registered else None
    try:
        if version is None:
            raise GateFailedError(f"no registered version for MLflow run {run_id}")
        report = _evaluate(client, loaded, name, version, run_id, read_data)
    except Exception as exc:  # fail closed: an error inside the gate is a failed gate
        report = GateReport(model=name, version=version, run_id=run_id)
        report.checks.append(CheckResult("gate", "gate", "error", detail=f"{type(exc).__name__}: {exc}"))
    result = "passed" if report.passed else "failed"
    client.log_text(run_id, report.to_json(), GATE_REPORT_JSON)
    client.log_text(run_id, report.to_markdown(), GATE_REPORT_MD)
    client.set_tag(run_id, Tag.GATE, result)
    location = f"{client.get_run(run_id).info.artifact_uri}/{GATE_REPORT_MD}"
    if version is not None:
        client.set_model_version_tag(name, version, Tag.GATE_REPORT, location)
        client.set_model_version_tag(name, version, Tag.GATE, result)  # last: the verdict readers wait on
    return GateOutcome(report=report, run_id=run_id, version=version, location=location)


def _evaluate(
    client: MlflowClient,
    loaded: LoadedConfig,
    name: str,
    version: str,
    run_id: str,
    read_data: Callable[[], pd.DataFrame],
) -> GateReport:
    from airflow_mlops.gates.checks import GateInputs, HoldOut, evaluate_gate
    from airflow_mlops.registry.checksum import load_verified_sklearn
    from airflow_mlops.registry.versions import alias_version
    from airflow_mlops.training.trainer import split_data

    cfg = loaded.config
    split = split_data(read_data(), cfg)
    candidate = load_verified_sklearn(client, name, version)
    champion_version = alias_version(client, name, Alias.CHAMPION)
    champion = None
    if champion_version == version:
        champion_version = None  # re-gating the champion itself: nothing to compare with
    elif champion_version is not None:
        champion = load_verified_sklearn(client, name, champion_version)
    return evaluate_gate(
        GateInputs(
            config=cfg,
            holdout=HoldOut(split.x_test, split.y_test, split.audit_test),
            candidate=candidate,
            champion=champion,
            champion_version=champion_version,
            behaviour_cases=lambda: behaviour_cases(loaded),
        ),
        model=name,
        version=version,
        run_id=run_id,
    )
