"""The loader reads plain configs with libyaml (fast) and everything else exactly as ``yaml.safe_load`` does.

libyaml's scanner accepts a few texts PyYAML's refuses and reads an empty ``!`` node differently; those
texts must keep the old outcome (same error text, same value, same sha256).
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import yaml

from airflow_mlops.config import loader
from airflow_mlops.config.loader import load_config
from airflow_mlops.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "configs"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("a: 1\t\nb: 2\n", "found character '\\t' that cannot start any token", id="tab-after-value"),
        pytest.param("a:\t1\n", "found character '\\t' that cannot start any token", id="tab-separator"),
        pytest.param("a: [1,\t2]\n", "found character '\\t' that cannot start any token", id="tab-in-flow"),
        pytest.param("a: |#\n  x\n", "expected chomping or indentation indicators, but found '#'", id="block-hash"),
    ],
)
def test_texts_only_libyaml_accepts_stay_invalid(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "fraud_model.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: invalid YAML (line ")
    assert str(caught.value).endswith(f": {problem}")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: !\nb: 1\n", id="empty-non-specific-tag"),
        pytest.param("a: {b: 1, ? c: 2}\n", id="flow-explicit-key"),
        pytest.param("a: caf\u00e9\n", id="non-ascii"),
        pytest.param("a: 1\r\nb: [x, y]\r\n", id="crlf"),
    ],
)
def test_values_match_safe_load(text: str) -> None:
    assert loader._parse_yaml(Path("x.yaml"), text) == yaml.safe_load(text)


@pytest.mark.parametrize("name", ["fraud", "diabetes"])
def test_example_configs_take_the_fast_path_with_the_same_values(name: str) -> None:
    text = (EXAMPLES / f"{name}.yaml").read_text()
    assert loader._PLAIN_TEXT.fullmatch(text) and not loader._BLOCK_HEADER_COMMENT.search(text)
    assert loader._parse_yaml(Path("x.yaml"), text) == yaml.safe_load(text)


def test_sha256_is_the_same_through_either_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = load_config(EXAMPLES / "fraud.yaml").sha256
    monkeypatch.setattr(loader, "_FAST_SAFE_LOADER", None)
    assert load_config(EXAMPLES / "fraud.yaml").sha256 == fast


@pytest.mark.parametrize("enabled", [True, False], ids=["gc-on", "gc-off"])
def test_build_dags_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, enabled: bool) -> None:
    from airflow_mlops.factories import build_dags

    (tmp_path / "broken.yaml").write_text("name: [\n")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.warns(UserWarning, match="invalid model config"):
            dags = build_dags(None, tmp_path)
        assert list(dags) == ["broken__config_error"]
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
