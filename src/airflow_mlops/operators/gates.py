"""``GateModelOperator``: evaluate the registered candidate against the config's gates (fail closed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator
from airflow_mlops.ui.links import MlflowModelVersionLink, MlflowRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class GateModelOperator(MlopsBaseOperator):
    """Run thresholds, champion comparison, behaviour cases and slice checks on the held-out rows.

    A thin wrapper over :func:`airflow_mlops.gates.service.gate_version`: the report (JSON + markdown)
    becomes an artifact of the run and the version is tagged ``mlops.gate=passed|failed``. The candidate
    and champion are loaded only after their checksums match. Any error inside the gate is a failed
    gate. On failure the task fails with the report's location, and no alias moves.

    Returns ``{"version", "gate", "report", "mlflow_run_id"}``.
    """

    #: The run holds the gate report; a failed gate links to it too (``mlflow_link_info``).
    operator_extra_links = (MlflowRunLink(), MlflowModelVersionLink())

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.gates.service import gate_version

        with self.hook.activate() as client:
            run_id = self.run_id(client, context)
            outcome = gate_version(
                client, self.loaded, run_id, lambda: self.read_verified_data(client, run_id), model=self.model
            )
            if outcome.version is not None:
                self.write_card(client, outcome.version)  # passed or not: the card says what the gate found
        self.mlflow_link_info = {"mlflow_run_id": run_id, "version": outcome.version}
        self.log.info("Gate report for %s v%s:\n%s", self.model, outcome.version, outcome.report.to_markdown())
        if not outcome.passed:
            raise outcome.failure()
        self.log.info("Gate passed; report at %s", outcome.location)
        return outcome.to_dict()
