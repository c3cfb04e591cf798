"""The dry gate: train a candidate on a sample of a config's data and run its gates, registering nothing.

For CI on a change to a model config (``airflow-mlops dry-gate``): would this config train, and would
its candidate pass the gates that need no champion? The steps reuse what ``<model>__train`` does:

1. read the data as ``fingerprint_data`` chooses and reads it (``data.uri``, or ``data_uri`` if given;
   a folder gives its newest file, or the files within ``retraining.window``);
2. keep a reproducible sample of at most ``sample_rows`` rows: seeded with ``estimator.seed``, stratified
   on the target for classification (each class keeps its share of the rows), in the data's row order;
3. split, fit and score the sample as ``train_model`` does (:func:`~airflow_mlops.training.trainer.fit_and_evaluate`);
4. run the gate (:func:`~airflow_mlops.gates.checks.evaluate_gate`) with no champion: thresholds,
   behaviour cases and slices decide; the champion comparison reports ``skipped``.

Nothing reaches MLflow: this module never imports it, so no tracking run, model or registry entry can
be created, and nothing is written to disk. The data expectations are not run (a sample would fail
row-count expectations by design); ``validate_data`` runs them in the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ConfigError, DataError, MissingExtraError

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.config.loader import LoadedConfig
    from airflow_mlops.config.schema import ModelConfig
    from airflow_mlops.gates.report import GateReport

#: Rows the candidate is trained and gated on when the caller does not say.
DEFAULT_SAMPLE_ROWS = 5000
#: What a dry gate does not check, printed with every report so a pass is not read as more than it is.
NOT_CHECKED = "champion comparison (no champion in a dry run), data expectations; nothing is registered"


@dataclass(frozen=True)
class DryGateResult:
    """The outcome for one config file: a gate report, or the error that stopped it before the gate."""

    path: Path
    model: str | None = None
    report: GateReport | None = None
    error: str | None = None
    rows: int = 0
    sampled: int = 0
    train_rows: int = 0
    holdout_rows: int = 0
    sample_note: str = ""

    @property
    def passed(self) -> bool:
        return self.error is None and self.report is not None and self.report.passed

    def problems(self) -> list[str]:
        """One line per reason this config failed: the error, or each failing check with value and bound."""
        if self.error is not None:
            return self.error.splitlines()
        failures = self.report.failures if self.report is not None else []
        return [
            f"{self.path}: {c.name} ({c.status}: {_shown(c.value)} vs {c.threshold or '-'}) {c.detail}".rstrip()
            for c in failures
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model,
            "result": "passed" if self.passed else "failed",
            "error": self.error,
            "rows": self.rows,
            "sampled_rows": self.sampled,
            "train_rows": self.train_rows,
            "holdout_rows": self.holdout_rows,
            "sample": self.sample_note,
            "not_checked": NOT_CHECKED,
            "report": self.report.to_dict() if self.report is not None else None,
        }

    def to_markdown(self) -> str:
        head = f"## Dry gate: {self.path} ({self.model or '?'}) — **{'PASSED' if self.passed else 'FAILED'}**\n\n"
        if self.report is None:
            return head + "\n".join(f"- {line}" for line in self.problems()) + "\n"
        facts = (
            f"- sample: {self.sampled} of {self.rows} rows ({self.sample_note}); trained on {self.train_rows}, "
            f"gated on {self.holdout_rows} held-out rows\n- not checked: {NOT_CHECKED}\n\n"
        )
        return head + facts + self.report.to_markdown()


def _shown(value: float | str | None) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def dry_gate(
    path: str | Path,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    data_uri: str | None = None,
    data_conn_id: str | None = None,
) -> DryGateResult:
    """Load ``path``, train on a sample of its data and gate the candidate. Never raises for a bad
    config, unreadable data or a failed fit: each becomes the result's ``error``, naming file and field.

    :param sample_rows: At most this many rows are used (all rows when the data has fewer).
    :param data_uri: Read this instead of the config's ``data.uri`` (a local path is taken as given,
        relative to the current directory; URIs as for ``data.uri``).
    :param data_conn_id: Airflow connection for an object-store URI; default: ``data.conn_id``.
    """
    from airflow_mlops.config.loader import load_config

    path = Path(path)
    if sample_rows < 1:
        raise ValueError(f"sample_rows: got {sample_rows}; expected a positive number of rows")
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        return DryGateResult(path, error=str(exc))
    field = "--data-uri" if data_uri else "data.uri"
    try:
        frame = read_training_data(loaded, data_uri, data_conn_id)
    except (DataError, MissingExtraError) as exc:
        return DryGateResult(path, loaded.name, error=f"{path}: {field}: {exc}")
    return _train_and_gate(loaded, frame, sample_rows)


def read_training_data(loaded: LoadedConfig, data_uri: str | None = None, conn_id: str | None = None) -> pd.DataFrame:
    """The rows ``fingerprint_data`` would read for this config (the same file choice and readers)."""
    from airflow_mlops.config.schema import parse_duration
    from airflow_mlops.data.snapshot import choose_files, read_snapshot

    cfg = loaded.config
    if data_uri:
        uri = data_uri if "://" in data_uri else str(Path(data_uri).expanduser().resolve())
    else:
        uri = loaded.resolve(cfg.data.uri)
    conn_id = conn_id or cfg.data.conn_id
    window = parse_duration(cfg.retraining.window) if cfg.retraining.window is not None else None
    return read_snapshot(choose_files(uri, conn_id, window), conn_id, cfg.data.format).frame


def take_sample(frame: pd.DataFrame, config: ModelConfig, rows: int) -> tuple[pd.DataFrame, str]:
    """At most ``rows`` rows, the same ones for the same data, config seed and ``rows``; and how they were taken.

    Classification samples each target class with the same fraction (``round(fraction * class rows)``,
    so the total may differ from ``rows`` by about one row per class). The sample keeps the data's
    row order, so the split that follows behaves as it does on the full data.
    """
    seed = config.estimator.seed
    if rows >= len(frame):
        return frame, "all rows"
    if config.task == "classification" and config.target in frame.columns:
        grouped = frame.groupby(config.target, group_keys=False, dropna=False, sort=True)
        sample = grouped.sample(frac=rows / len(frame), random_state=seed)
        how = f"seed {seed}, stratified on {config.target}"
    else:
        sample = frame.sample(n=rows, random_state=seed)
        how = f"seed {seed}"
    return sample.sort_index(), how


def _train_and_gate(loaded: LoadedConfig, frame: pd.DataFrame, sample_rows: int) -> DryGateResult:
    from airflow_mlops.gates.checks import GateInputs, HoldOut, evaluate_gate
    from airflow_mlops.gates.service import behaviour_cases
    from airflow_mlops.training.trainer import fit_and_evaluate

    cfg, path = loaded.config, loaded.path
    sample, how = take_sample(frame, cfg, sample_rows)
    result = partial(DryGateResult, path, loaded.name, rows=len(frame), sampled=len(sample), sample_note=how)
    try:
        outcome = fit_and_evaluate(sample, cfg)
    except ConfigError as exc:  # the estimator or its params, named by field
        return result(error=f"{path}: {exc}")
    except DataError as exc:  # columns or target values the config names
        return result(error=f"{path}: data: {exc}")
    except Exception as exc:  # sklearn refusing the sample (e.g. one class only): fail closed
        return result(error=f"{path}: training on the sample failed: {type(exc).__name__}: {exc}")
    split = outcome.split
    report = evaluate_gate(
        GateInputs(
            config=cfg,
            holdout=HoldOut(split.x_test, split.y_test, split.audit_test),
            candidate=outcome.model,
            champion=None,
            behaviour_cases=lambda: behaviour_cases(loaded),
        ),
        model=loaded.name,
        version=None,
        run_id=None,
    )
    return result(report=report, train_rows=len(split.x_train), holdout_rows=len(split.x_test))
