"""The docs site's generated pages: the config reference covers the schema, and example snippets resolve."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from airflow_mlops.config.schema import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "docs" / "hooks"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HOOKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


reference = _load("config_reference")


def _schema_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field path of ``model``, walked here independently of the generator."""
    from typing import get_args, get_origin

    def nested(annotation: object) -> list[tuple[str, type[BaseModel]]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [("", annotation)]
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is list:
            return [("[]" + s, m) for s, m in nested(args[0])]
        if origin is dict:
            return [(".<key>" + s, m) for s, m in nested(args[1])]
        return [pair for arg in args for pair in nested(arg)]

    paths = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}" if prefix else (info.alias or name)
        paths.append(path)
        for suffix, sub in nested(info.annotation):
            paths.extend(_schema_paths(sub, path + suffix))
    return paths


def test_config_reference_lists_every_schema_field() -> None:
    page = reference.config_reference()
    paths = _schema_paths(ModelConfig)
    assert len(paths) > 60
    missing = [path for path in paths if f"| `{path}` |" not in page]
    assert missing == []
    assert sorted(reference.field_paths(ModelConfig)) == sorted(paths)


def test_config_reference_carries_types_defaults_constraints_and_comments() -> None:
    page = reference.config_reference()
    assert "| `name` | string (matches `^[a-z][a-z0-9_]{1,62}$`) | **required** |" in page
    assert '| `rollout.target` | `"local"` or `"sagemaker"` or `"azureml"` | `"local"` |' in page
    assert "| `rollout.canary.steps` | list of number (> 0, ≤ 100) | `[5.0, 25.0, 50.0, 100.0]` |" in page
    assert '| `approval.timeout` | [duration](#durations) | `"7d"` | How long to wait for a human' in page
    assert "| `estimator.class` |" in page  # the YAML key (alias), not the Python attribute class_
    assert "- expected strictly increasing percentages" in page  # a validator's rule


class _Inner(BaseModel):
    """An inner section."""

    #: How many, at most.
    limit: int = Field(default=3, ge=1)


class _Probe(BaseModel):
    """A model that stands for the schema growing a field."""

    #: A field added later, with a comment.
    brand_new: Literal["a", "b"] = "a"
    described: float = Field(default=0.5, gt=0.0, description="Said in Field(description=...).")
    pattern: str = Field(default="x", pattern=r"^(x|y)$")
    inner: _Inner = Field(default_factory=_Inner)
    many: dict[str, _Inner] = Field(default_factory=dict)


def test_a_new_field_appears_with_everything_it_declares() -> None:
    page = reference.render_model_reference(_Probe)
    assert '| `brand_new` | `"a"` or `"b"` | `"a"` | A field added later, with a comment. |' in page
    assert "| `described` | number (> 0) | `0.5` | Said in Field(description=...). |" in page
    assert r"matches `^(x\|y)$`" in page  # a pipe cannot split the table row
    assert "| `inner.limit` | integer (≥ 1) | `3` | How many, at most. |" in page
    assert "| `many.<key>.limit` |" in page
    assert "An inner section." in page
    assert sorted(reference.field_paths(_Probe)) == sorted(_schema_paths(_Probe))


def test_settings_reference_lists_every_option() -> None:
    from airflow_mlops import settings

    page = reference.settings_reference()
    for option in settings.OPTIONS.values():
        assert f"| `{option.key}` |" in page
        assert f"`{option.env}`" in page and f"`{option.airflow_env}`" in page


def test_drift_page_source_is_the_module_docstring() -> None:
    text = reference.drift_reference()
    assert "PSI = sum((a - e) * ln(a / e))" in text
    assert "D_grid <= D_exact <= D_grid + B" in text
    assert ":data:" not in text and ":func:" not in text


def test_airflow_markers_are_snippet_sections_and_a_missing_one_fails() -> None:
    import markdown
    from pymdownx.snippets import SnippetMissingError

    snippets = _load("airflow_snippets")

    def render(source: str) -> str:
        extension = snippets.AirflowSnippetExtension(base_path=[str(ROOT)], check_paths=True, dedent_subsections=True)
        return markdown.markdown(source, extensions=[extension, "fenced_code"])

    html = render('```python\n--8<-- "dags/examples/example_rollout.py:howto_operator_rollout"\n```')
    assert "ResolveCandidateOperator(" in html
    assert "[START" not in html and "[END" not in html and "with DAG(" not in html
    with pytest.raises(SnippetMissingError):
        render('```python\n--8<-- "dags/examples/example_rollout.py:howto_no_such_marker"\n```')


@pytest.mark.integration
def test_mkdocs_build_strict_includes_the_example_code(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is not installed (the docs extra)"
    site = tmp_path / "site"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": str(Path(sys.executable).parent), "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rollout = (site / "howto" / "rollout" / "index.html").read_text()
    # the example DAG's lines, as highlighted HTML (tokens are wrapped in spans)
    assert "ResolveCandidateOperator" in rollout and "CanaryStepOperator" in rollout
    assert "the bundled gateway; it follows the registry aliases" in rollout  # a comment line of the example
    sensors = (site / "howto" / "sensors" / "index.html").read_text()
    for name in ("wait_for_champion", "wait_for_approval", "wait_for_drift"):
        assert name in sensors
    config = (site / "config" / "index.html").read_text()
    assert "rollout.canary.max_metric_regression" in config
    assert "AIRFLOW_MLOPS_STATE_DB" in (site / "settings" / "index.html").read_text()
    assert "fonts.googleapis.com" not in rollout
