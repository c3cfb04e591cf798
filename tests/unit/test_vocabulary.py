"""One vocabulary, one settings module: nothing else spells tag keys, asset URIs or our variables."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from airflow_mlops.vocabulary import (
    ALIASES,
    ASSET_KINDS,
    MODEL_NAME_PATTERN,
    Alias,
    Tag,
    asset_uri,
    normalize_asset_uri,
)

REPO = Path(__file__).resolve().parents[2]
OWNERS = {"vocabulary.py": ("mlops.", "mlops://"), "settings.py": ("AIRFLOW_MLOPS_",)}
SPELLINGS = {
    "mlops.": re.compile(r"(?<![\w.])mlops\.[a-z]"),  # a tag key; not "airflow_mlops.hooks"
    "mlops://": re.compile(r"(?<![\w.])mlops://"),
    "AIRFLOW_MLOPS_": re.compile(r"(?<!\w)AIRFLOW_MLOPS_"),
}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
        # attribute docstrings (a bare string right after an assignment) are documentation too
        if hasattr(node, "body") and isinstance(node.body, list):
            for stmt in node.body[1:]:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    ids.add(id(stmt.value))
    return ids


def spelled_literals(path: Path) -> list[str]:
    """``file:line: literal`` for every string constant (docstrings aside) that spells our words."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = _docstring_nodes(tree)
    allowed = OWNERS.get(path.name, ()) if path.parent.name in ("airflow_mlops", "dags") else ()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            hits = [word for word, pattern in SPELLINGS.items() if pattern.search(node.value) and word not in allowed]
            if hits:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    return found


def source_files() -> list[Path]:
    return sorted([*(REPO / "src").rglob("*.py"), *(REPO / "dags").rglob("*.py"), *(REPO / "plugins").rglob("*.py")])


def test_only_the_vocabulary_and_settings_modules_spell_our_words() -> None:
    offenders = [hit for path in source_files() for hit in spelled_literals(path)]
    assert offenders == [], "use airflow_mlops.vocabulary / airflow_mlops.settings instead:\n" + "\n".join(offenders)


def test_the_guard_catches_a_spelled_tag(tmp_path: Path) -> None:
    """The check above must be able to fail: a literal tag key in code (not in a docstring) is found."""
    module = REPO / "src" / "airflow_mlops" / "_guard_probe.py"
    module.write_text('"""Docstring may say mlops.gate."""\nTAG = "mlops.gate"\nURI = f"mlops://{1}/drift"\n')
    try:
        hits = spelled_literals(module)
    finally:
        module.unlink()
    assert [hit.split(": ", 1)[1] for hit in hits] == ["'mlops.gate'", "'mlops://'"]


def test_tag_keys_are_unique_and_namespaced() -> None:
    keys = [value for name, value in vars(Tag).items() if name.isupper() and isinstance(value, str)]
    assert all(key.startswith(Tag.PREFIX) for key in keys)
    assert len(keys) == len(set(keys)), "two Tag constants share a key"
    assert set(Tag.LINEAGE) <= set(keys)
    assert Tag.env("sklearn") == "mlops.env.sklearn"


def test_aliases_and_asset_uris() -> None:
    assert ALIASES == ("champion", "challenger", "canary", "shadow", "previous")
    assert Alias.CHAMPION in ALIASES
    assert [asset_uri("fraud", kind) for kind in ASSET_KINDS] == [
        "mlops://fraud/candidate",
        "mlops://fraud/drift",
        "mlops://fraud/data",
        "mlops://fraud/predictions",
    ]
    with pytest.raises(ValueError, match=r"asset kind: got 'candidates'; expected one of"):
        asset_uri("fraud", "candidates")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mlops://fraud/drift", "mlops://fraud/drift"),
        ("mlops://Fraud/candidate", "mlops://fraud/candidate"),
        ("mlops://churn_v2/predictions", "mlops://churn_v2/predictions"),
    ],
    ids=["canonical", "model-lowercased", "underscore-and-digit"],
)
def test_the_asset_uri_handler_keeps_our_uris(uri: str, expected: str) -> None:
    assert urlunsplit(normalize_asset_uri(urlsplit(uri))) == expected
    for kind in ASSET_KINDS:
        assert urlunsplit(normalize_asset_uri(urlsplit(asset_uri("fraud", kind)))) == asset_uri("fraud", kind)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlops://fraud/drfit", r"kind 'drfit' is unknown; expected mlops://<model>/<kind> with <kind> one of"),
        ("mlops://fraud", r"kind '' is unknown"),
        ("mlops://fraud/drift/extra", r"kind 'drift/extra' is unknown"),
        ("mlops://fraud-model/drift", r"model 'fraud-model' is not a model name"),
        ("mlops://x/drift", r"model 'x' is not a model name"),
        ("mlops://user@fraud/drift", r"model 'user@fraud' is not a model name"),
        ("mlops://fraud:8080/drift", r"model 'fraud:8080' is not a model name"),
        ("mlops:///drift", r"model '' is not a model name"),
        ("mlops://fraud/drift?window=1h", r"a query string is not part of an asset URI"),
    ],
    ids=["typo-kind", "no-kind", "extra-segment", "hyphen", "too-short", "userinfo", "port", "no-model", "query"],
)
def test_the_asset_uri_handler_rejects_what_no_dag_produces(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^asset URI '{re.escape(uri)}': {message}"):
        normalize_asset_uri(urlsplit(uri))


def test_the_handler_knows_model_names_as_the_config_schema_does() -> None:
    from airflow_mlops.config.schema import ModelConfig

    (constraint,) = [m for m in ModelConfig.model_fields["name"].metadata if hasattr(m, "pattern")]
    assert constraint.pattern == MODEL_NAME_PATTERN
