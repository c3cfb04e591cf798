"""The gate report: each check with its value, threshold and status, rendered as JSON and markdown."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from airflow_mlops.gates.attributions import Attributions

Status = Literal["pass", "fail", "skipped", "error"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: Literal["threshold", "champion", "classes", "behaviour", "slice", "gate"]
    status: Status
    value: float | str | None = None
    threshold: str | None = None
    detail: str = ""


@dataclass
class GateReport:
    model: str
    version: str | None
    run_id: str | None
    checks: list[CheckResult] = field(default_factory=list)
    #: Which features drive the candidate's answers (``gates.attributions``); ``None`` when off or not reached.
    attributions: Attributions | None = None

    @property
    def passed(self) -> bool:
        """Passed when no check failed or errored (an error counts as a failure: fail closed)."""
        return all(c.status in ("pass", "skipped") for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status in ("fail", "error")]

    def to_dict(self) -> dict[str, Any]:
        checks = []
        for check in self.checks:
            item = asdict(check)
            if isinstance(item["value"], float) and not math.isfinite(item["value"]):
                item["value"] = str(item["value"])
            checks.append(item)
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "result": "passed" if self.passed else "failed",
            "checks": checks,
            "attributions": None if self.attributions is None else self.attributions.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def to_markdown(self) -> str:
        head = f"# Gate report: {self.model} v{self.version or '?'} — **{'PASSED' if self.passed else 'FAILED'}**\n\n"
        rows = ["| check | kind | value | threshold | status | detail |", "|---|---|---|---|---|---|"]
        for c in self.checks:
            value = f"{c.value:.4f}" if isinstance(c.value, float) else ("" if c.value is None else str(c.value))
            detail = c.detail.replace("|", "\\|").replace("\n", " ")
            rows.append(f"| {c.name} | {c.kind} | {value} | {c.threshold or ''} | {c.status} | {detail} |")
        if self.attributions is not None:
            from airflow_mlops.gates.attributions import markdown_lines
            from airflow_mlops.gates.evidence import cell

            rows += ["", "## Feature attributions", "", *markdown_lines(self.attributions, escape=cell)]
        return head + "\n".join(rows) + "\n"
