"""Property-based: hundreds of generated configs never crash the loader or the DAG builders.

Each example takes a shipped config and applies a few mutations a user (or an attacker with write access
to the config folder) could make: replace any value with any JSON/YAML value, delete a field, add an
unknown one. The loader must then either accept the config or raise ``ConfigError`` whose every line
names the source and a field path; an accepted config must build its DAGs.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_mlops.config.loader import load_inline_config
from airflow_mlops.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    name: yaml.safe_load((REPO / "dags" / "configs" / f"{name}.yaml").read_text()) for name in ("fraud", "diabetes")
}
SOURCE = "property"
#: ``<property>: <field path>: ...``: a field path is dotted names with optional ``[i]`` list indices.
FIELD_LINE = re.compile(r"^<property>: (?P<field>[A-Za-z_][\w]*(?:\[\d+\])*(?:\.[A-Za-z_][\w]*(?:\[\d+\])*)*): ")

KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "..", "../../etc/passwd", "~/x", "s3://b/k.csv", "ftp://h/x", "1h", "-5m", "0s", "roc_auc"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indices)."""
    found: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    raw = copy.deepcopy(EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(raw)
        path = draw(st.sampled_from(paths))
        parent = _parent(raw, path)
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        if not isinstance(raw, dict) or not raw:
            break
    return raw


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_configs())
def test_any_mutated_config_is_accepted_or_refused_field_by_field(raw: dict[str, Any]) -> None:
    try:
        loaded = load_inline_config(raw, SOURCE)
    except ConfigError as exc:
        lines = str(exc).splitlines()
        assert lines, "an empty error message"
        for line in lines:
            assert FIELD_LINE.match(line), f"a line that names no field: {line!r}"
        return
    assert loaded.config.name == raw["name"]


@pytest.fixture(scope="module")
def config_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property-configs")


@pytest.mark.integration  # builds Airflow DAGs for each example (~10 s): make test, not test-fast
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(raw=mutated_configs())
def test_an_accepted_config_builds_its_dags_and_a_refused_one_an_error_dag(
    raw: dict[str, Any], config_folder: Path
) -> None:
    """Through the DAG file's own path: one file in a folder, ``build_dags``; a builder never raises."""
    from airflow_mlops.factories import build_dags
    from airflow_mlops.factories.build import ConfigErrorWarning

    for old in config_folder.iterdir():
        old.unlink()
    name = (
        raw.get("name")
        if isinstance(raw.get("name"), str) and re.fullmatch(r"[a-z][a-z0-9_]{1,62}", raw["name"])
        else "model"
    )
    path = config_folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    try:
        load_inline_config(raw, SOURCE)
        valid = True
    except ConfigError:
        valid = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dags = build_dags(None, config_folder)
    if not valid:
        assert list(dags) == [f"{name}__config_error"], list(dags)
        assert any(issubclass(w.category, ConfigErrorWarning) for w in caught)
        return
    assert f"{raw['name']}__train" in dags, list(dags)
    assert not any(dag_id.endswith("__config_error") for dag_id in dags), list(dags)
