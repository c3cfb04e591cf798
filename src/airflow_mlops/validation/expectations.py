"""Run the config's expectations on a DataFrame with an ephemeral great-expectations context."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import ExpectationConfig
from airflow_mlops.exceptions import ConfigError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ExpectationOutcome:
    type: str
    kwargs: dict[str, Any]
    success: bool
    observed: dict[str, Any] = field(default_factory=dict)
    notes: str | None = None

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        seen = ", ".join(f"{k}={_short(v)}" for k, v in self.observed.items() if k in _SHOWN)
        text = f"{self.type}({args})"
        return f"{text}: {seen}" if seen else text


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 5:
        return repr(value[:5])[:-1] + ", ...]"
    return repr(value)


_SHOWN = ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list", "element_count")


@dataclass(frozen=True)
class ValidationOutcome:
    success: bool
    results: list[ExpectationOutcome]
    #: The full great-expectations result as JSON, logged as an MLflow artifact.
    raw_json: str

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success]

    def failure_message(self, source: str) -> str:
        lines = [f"{len(self.failures)} of {len(self.results)} expectations failed on {source}:"]
        lines += [f"  - {f.describe()}" + (f" ({f.notes})" if f.notes else "") for f in self.failures]
        return "\n".join(lines)


def _class_name(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def build_expectations(items: list[ExpectationConfig]) -> list[Any]:
    import great_expectations.expectations as gxe

    built = []
    for i, item in enumerate(items):
        cls = getattr(gxe, _class_name(item.type), None)
        if cls is None:
            raise ConfigError(f"expectations[{i}].type: got {item.type!r}; not a great-expectations expectation")
        try:
            built.append(cls(**item.kwargs, notes=item.notes) if item.notes else cls(**item.kwargs))
        except Exception as exc:
            raise ConfigError(
                f"expectations[{i}].kwargs: got {item.kwargs!r}; {item.type} rejected them: {exc}"
            ) from exc
    return built


def validate_frame(df: pd.DataFrame, items: list[ExpectationConfig], *, suite_name: str) -> ValidationOutcome:
    """Validate ``df`` against ``items``; never touches disk or network (ephemeral context)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    expectations = build_expectations(items)
    if not expectations:
        return ValidationOutcome(True, [], json.dumps({"success": True, "results": []}))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(f"{suite_name}-source")
        .add_dataframe_asset(f"{suite_name}-frame")
        .add_batch_definition_whole_dataframe(f"{suite_name}-batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}-validation", data=batch_definition, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": df})
    outcomes = []
    for item, res in zip(items, result.results, strict=True):
        outcomes.append(
            ExpectationOutcome(
                type=item.type,
                kwargs=dict(item.kwargs),
                success=bool(res.success),
                observed={k: v for k, v in (res.result or {}).items() if k in _SHOWN},
                notes=item.notes,
            )
        )
    raw = result.to_json_dict()  # type: ignore[no-untyped-call]
    return ValidationOutcome(bool(result.success), outcomes, json.dumps(raw, indent=2, default=str))
