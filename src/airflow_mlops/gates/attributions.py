"""Which features drive a model's answers, overall and per slice group: evidence for the gate report and the card.

Two methods, both over the model's *input columns* (a pipeline that one-hot encodes a string column is explained
per column, not per encoded column):

- **SHAP** (the optional ``shap`` package, ``pip install 'airflow-mlops[explain]'``): its model-agnostic
  permutation explainer on the model's score (a binary classifier's probability of the positive class, a
  multi-class classifier's class probabilities averaged over classes, a regressor's prediction). Importance is
  the mean absolute SHAP value. SHAP's masker only takes numbers, so a non-numeric column reaches it as integer
  codes (:class:`Codec`) that are decoded before the model sees a row.
- **Permutation importance** (scikit-learn), the fallback when ``shap`` is not installed: how much the config's
  primary metric worsens when a feature's values are shuffled.

Cost is bounded by sampling (``gates.attributions.rows`` overall, ``slice_rows`` per group, ``max_groups`` per
column) and the time taken is recorded. Nothing here imports Airflow or MLflow.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.config.schema import ModelConfig
    from airflow_mlops.gates.checks import HoldOut

__all__ = ["Attributions", "Codec", "GroupImportance", "Importance", "explain", "shap_available"]

SHAP_MISSING = "shap is not installed (pip install 'airflow-mlops[explain]'), so permutation importance"


def shap_available() -> bool:
    """Whether the optional ``shap`` package can be imported (looked up, not imported: it is slow to import)."""
    return importlib.util.find_spec("shap") is not None


@dataclass(frozen=True)
class Importance:
    feature: str
    value: float
    #: Standard deviation over the shuffles (permutation importance); ``None`` for SHAP.
    spread: float | None = None


@dataclass(frozen=True)
class GroupImportance:
    """The importance of each feature within one group of a slice column (e.g. ``region = north``)."""

    column: str
    group: str
    rows: int
    features: tuple[Importance, ...] = ()
    #: Why there is no ranking for this group (e.g. its rows hold one class only), else empty.
    note: str = ""


@dataclass(frozen=True)
class Attributions:
    method: str
    #: What the numbers measure (they differ between methods: compare features, not methods).
    unit: str
    #: Distinct held-out rows explained (the overall sample and the groups' samples).
    rows: int
    seconds: float
    overall: tuple[Importance, ...]
    groups: tuple[GroupImportance, ...] = ()
    note: str = ""

    def top(self, n: int) -> tuple[Importance, ...]:
        return self.overall[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "unit": self.unit,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "note": self.note,
            "overall": [_importance_dict(i) for i in self.overall],
            "groups": [
                {
                    "column": g.column,
                    "group": g.group,
                    "rows": g.rows,
                    "note": g.note,
                    "features": [_importance_dict(i) for i in g.features],
                }
                for g in self.groups
            ],
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Attributions:
        """Read back what :meth:`to_dict` wrote (from MLflow: outside input, checked field by field).

        :raises ValueError: naming ``where`` and the field that is not what the gate writes.
        """
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: attributions: expected an object")
        groups = []
        for i, item in enumerate(_list(raw.get("groups", []), f"{where}: attributions.groups")):
            at = f"{where}: attributions.groups[{i}]"
            if not isinstance(item, Mapping):
                raise ValueError(f"{at}: expected an object")
            groups.append(
                GroupImportance(
                    column=_text(item.get("column"), f"{at}.column"),
                    group=_text(item.get("group"), f"{at}.group"),
                    rows=int(_number(item.get("rows"), f"{at}.rows")),
                    features=_importances(item.get("features", []), f"{at}.features"),
                    note=_text(item.get("note", ""), f"{at}.note"),
                )
            )
        return cls(
            method=_text(raw.get("method"), f"{where}: attributions.method"),
            unit=_text(raw.get("unit"), f"{where}: attributions.unit"),
            rows=int(_number(raw.get("rows"), f"{where}: attributions.rows")),
            seconds=_number(raw.get("seconds"), f"{where}: attributions.seconds"),
            overall=_importances(raw.get("overall"), f"{where}: attributions.overall"),
            groups=tuple(groups),
            note=_text(raw.get("note", ""), f"{where}: attributions.note"),
        )


def _importance_dict(item: Importance) -> dict[str, Any]:
    out: dict[str, Any] = {"feature": item.feature, "value": item.value}
    if item.spread is not None:
        out["spread"] = item.spread
    return out


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> float:
    try:
        number = None if isinstance(value, bool) or not isinstance(value, int | float) else float(value)
    except OverflowError:  # an integer of 400 digits from JSON
        number = None
    if number is None or not math.isfinite(number):
        raise ValueError(f"{where}: expected a finite number, got {str(value)[:40]!r}")
    return number


def _importances(value: Any, where: str) -> tuple[Importance, ...]:
    found = []
    for i, item in enumerate(_list(value, where)):
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}[{i}]: expected an object")
        spread = item.get("spread")
        found.append(
            Importance(
                feature=_text(item.get("feature"), f"{where}[{i}].feature"),
                value=_number(item.get("value"), f"{where}[{i}].value"),
                spread=None if spread is None else _number(spread, f"{where}[{i}].spread"),
            )
        )
    return tuple(found)


def _ranking(features: Sequence[str], values: Any, spreads: Any = None) -> tuple[Importance, ...]:
    """Features by importance, largest first (ties by name, so the order is stable).

    :raises ValueError: an importance is not a finite number (e.g. a metric undefined on these rows).
    """
    import numpy as np

    if not np.isfinite(np.asarray(values, dtype=float)).all():
        raise ValueError("an importance is not a finite number (is the metric defined on these rows?)")
    items = [
        Importance(str(name), float(values[i]), None if spreads is None else float(spreads[i]))
        for i, name in enumerate(features)
    ]
    return tuple(sorted(items, key=lambda item: (-item.value, item.feature)))


@dataclass
class Codec:
    """Input columns as a float matrix and back: numbers as they are, anything else as codes of its values.

    ``-1`` is a missing (or unseen) value; it decodes to the column's own missing value (NaN as pandas reads
    it, or ``None``), so an imputer fitted on NaN still recognises it. Decoding restores each column's dtype,
    so the model sees the frame it was trained on.
    """

    columns: list[str]
    dtypes: dict[str, Any]
    categories: dict[str, np.ndarray] = field(default_factory=dict)
    #: What a missing value of each coded column was (the first one seen; NaN when none was).
    missing: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Codec:
        import pandas as pd
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        categories, missing = {}, {}
        for name in frame.columns:
            column = frame[name]
            if not is_numeric_dtype(column) or is_bool_dtype(column):
                categories[str(name)] = pd.unique(column.dropna().to_numpy(dtype=object))
                absent = column[column.isna()]
                missing[str(name)] = absent.iloc[0] if len(absent) else float("nan")
        return cls([str(c) for c in frame.columns], dict(frame.dtypes.items()), categories, missing)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        import numpy as np
        import pandas as pd

        out = np.empty((len(frame), len(self.columns)), dtype=float)
        for j, name in enumerate(self.columns):
            column = frame[name]
            if name in self.categories:
                index = pd.Index(self.categories[name], dtype=object)
                out[:, j] = index.get_indexer(column.to_numpy(dtype=object))
            else:
                out[:, j] = column.to_numpy(dtype=float, na_value=np.nan)
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        data: dict[str, Any] = {}
        for j, name in enumerate(self.columns):
            values = matrix[:, j]
            dtype = self.dtypes[name]
            if name in self.categories:
                known, absent = self.categories[name], self.missing.get(name, float("nan"))
                codes = values.astype(int)
                decoded = np.full(len(codes), absent, dtype=object)
                if len(known):  # a column with no value at all in these rows decodes to missing only
                    found = codes >= 0
                    decoded[found] = known[codes[found]]
                if isinstance(dtype, pd.CategoricalDtype):
                    data[name] = pd.Categorical(decoded, dtype=dtype)
                elif pd.api.types.is_object_dtype(dtype):
                    data[name] = decoded
                else:  # bool, pandas' string dtype ...
                    data[name] = pd.Series(decoded, dtype=object).astype(dtype)
            else:
                series = pd.Series(values)
                try:
                    data[name] = series.astype(dtype)
                except (TypeError, ValueError):  # an integer column given a missing value: keep it float
                    data[name] = series
        return pd.DataFrame(data, columns=self.columns)


def _sample(positions: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` of ``positions``, drawn without replacement, in their original order."""
    import numpy as np

    if len(positions) <= n:
        return positions
    return np.sort(rng.choice(positions, size=n, replace=False))


def _slice_samples(holdout: HoldOut, config: ModelConfig, rng: np.random.Generator) -> list[tuple[str, str, Any]]:
    """``(column, group, positions)`` for the largest groups of each ``gates.slices`` column with enough rows."""
    import numpy as np

    from airflow_mlops.gates.checks import group_labels

    settings = config.gates.attributions
    min_rows: dict[str, int] = {}
    for rule in config.gates.slices:
        min_rows[rule.column] = min(rule.min_rows, min_rows.get(rule.column, rule.min_rows))
    samples = []
    for column, least in min_rows.items():
        groups = group_labels(holdout.column(column))
        names, counts = np.unique(groups, return_counts=True)
        order = sorted((int(-c), str(g)) for g, c in zip(names, counts, strict=True) if c >= least)
        for _, group in order[: settings.max_groups]:
            samples.append((column, group, _sample(np.flatnonzero(groups == group), settings.slice_rows, rng)))
    return samples


def explain(
    model: Any, holdout: HoldOut, config: ModelConfig, *, clock: Callable[[], float] = time.perf_counter
) -> Attributions | None:
    """The candidate's feature attributions on held-out rows, per ``gates.attributions`` (``None`` when off).

    :raises Exception: whatever explaining raised overall (the gate reports it and fails closed); a group
        that cannot be explained (e.g. one class only, so no AUC) is noted on the group instead.
    """
    import numpy as np

    settings = config.gates.attributions
    if settings.method == "off":
        return None
    started = clock()
    rng = np.random.default_rng(settings.seed)
    overall = _sample(np.arange(len(holdout.x)), settings.rows, rng)
    groups = _slice_samples(holdout, config, rng)
    if settings.method in ("auto", "shap") and shap_available():
        found = _shap(model, holdout, config, overall, groups, rng)
        note = ""
    else:
        found = _permutation(model, holdout, config, overall, groups)
        note = SHAP_MISSING if settings.method == "shap" else ""
    method, unit, rows, ranking, by_group = found
    return Attributions(method, unit, rows, clock() - started, ranking, by_group, note)


_Found = tuple[str, str, int, tuple[Importance, ...], tuple[GroupImportance, ...]]


def _permutation(
    model: Any, holdout: HoldOut, config: ModelConfig, overall: np.ndarray, groups: list[tuple[str, str, Any]]
) -> _Found:
    from sklearn.inspection import permutation_importance

    from airflow_mlops.gates.checks import metric_on
    from airflow_mlops.training.metrics import higher_is_better

    settings = config.gates.attributions
    metric = config.primary_metric
    sign = 1.0 if higher_is_better(metric) else -1.0

    def scorer(estimator: Any, x: pd.DataFrame, y: Any) -> float:
        return sign * metric_on(estimator, metric, x, y, config)

    def rank(positions: np.ndarray) -> tuple[Importance, ...]:
        x, y = holdout.x.iloc[positions], holdout.y.iloc[positions]
        result = permutation_importance(
            model, x, y, scoring=scorer, n_repeats=settings.repeats, random_state=settings.seed
        )
        return _ranking(list(x.columns), result.importances_mean, result.importances_std)

    by_group = []
    for column, group, positions in groups:
        try:
            by_group.append(GroupImportance(column, group, len(positions), rank(positions)))
        except Exception as exc:  # one group that cannot be scored must not hide the others
            by_group.append(GroupImportance(column, group, len(positions), note=f"{type(exc).__name__}: {exc}"))
    unit = f"how much {metric} worsens when the feature's values are shuffled (mean of {settings.repeats})"
    return "permutation", unit, _distinct(overall, groups), rank(overall), tuple(by_group)


def _distinct(overall: np.ndarray, groups: list[tuple[str, str, Any]]) -> int:
    import numpy as np

    return len(np.unique(np.concatenate([overall, *(p for _, _, p in groups)]).astype(int)))


def _shap(
    model: Any,
    holdout: HoldOut,
    config: ModelConfig,
    overall: np.ndarray,
    groups: list[tuple[str, str, Any]],
    rng: np.random.Generator,
) -> _Found:
    import numpy as np
    import shap

    from airflow_mlops.training.trainer import model_classes

    settings = config.gates.attributions
    features = list(holdout.x.columns)
    codec = Codec.fit(holdout.x)
    explained = np.unique(np.concatenate([overall, *(p for _, _, p in groups)]).astype(int))
    where = {int(p): i for i, p in enumerate(explained)}
    background = codec.encode(holdout.x.iloc[_sample(np.arange(len(holdout.x)), settings.background, rng)])
    classes = model_classes(model, config) if config.task == "classification" else None

    def score(matrix: np.ndarray) -> np.ndarray:
        """The model's score on SHAP's masked rows (one ``predict_proba``; labels are not needed here)."""
        x = codec.decode(matrix)
        if classes is None:
            return np.asarray(model.predict(x), dtype=float)
        proba = np.asarray(model.predict_proba(x), dtype=float)
        return proba[:, classes.positive_index] if classes.binary else proba

    evaluations = 2 * len(features) + 1  # one forward and one backward pass over a random order of the features
    state = np.random.get_state()  # shap seeds numpy's global generator: the worker's is given back
    try:
        explainer = shap.explainers.Permutation(
            score, shap.maskers.Independent(background, max_samples=settings.background), seed=settings.seed
        )
        values = explainer(
            codec.encode(holdout.x.iloc[explained]),
            max_evals=evaluations,
            batch_size=evaluations,  # every masked copy of a row in one call of the model
            silent=True,
        ).values
    finally:
        np.random.set_state(state)
    magnitude = np.abs(np.asarray(values, dtype=float))
    per_class = magnitude.ndim == 3
    if per_class:  # one column per class: average over the classes
        magnitude = magnitude.mean(axis=2)

    def rank(positions: np.ndarray) -> tuple[Importance, ...]:
        rows = [where[int(p)] for p in positions]
        return _ranking(features, magnitude[rows].mean(axis=0))

    by_group = []
    for column, group, positions in groups:
        try:
            by_group.append(GroupImportance(column, group, len(positions), rank(positions)))
        except ValueError as exc:
            by_group.append(GroupImportance(column, group, len(positions), note=str(exc)))
    if config.task != "classification":
        of = "the prediction"
    elif per_class:
        of = "the class probabilities (averaged over classes)"
    else:
        of = "the probability of the positive class"
    return "shap", f"mean |SHAP value| of {of}", len(explained), rank(overall), tuple(by_group)


def markdown_lines(attributions: Attributions, top: int = 10, escape: Callable[[Any], str] = str) -> list[str]:
    """The attributions as markdown: the overall top ``top`` and, per slice group, its three largest.

    ``escape`` makes a value safe for a markdown cell (values read back from MLflow are outside input).
    """
    a = attributions
    lines = [
        f"Method: **{escape(a.method)}** — {escape(a.unit)}; {a.rows} held-out rows explained in {a.seconds:.2f} s."
    ]
    if a.note:
        lines.append(f"Note: {escape(a.note)}.")
    if not a.overall:
        return [*lines, "", "no features ranked"]
    lines += ["", "| feature | importance |", "|---|---|"]
    for item in a.top(top):
        spread = "" if item.spread is None else f" ± {item.spread:.4f}"
        lines.append(f"| {escape(item.feature)} | {item.value:.4f}{spread} |")
    if len(a.overall) > top:
        lines.append(f"… and {len(a.overall) - top} more features.")
    if a.groups:
        lines += ["", "Per slice group (largest three):"]
        for g in a.groups:
            ranked = ", ".join(f"{escape(i.feature)} {i.value:.4f}" for i in g.features[:3])
            lines.append(f"- {escape(g.column)} = {escape(g.group)} ({g.rows} rows): {ranked or escape(g.note)}")
    return lines
