"""Read ``<model>.yaml`` files into validated ``ModelConfig`` objects, with errors that teach.

Every error names the file, the field path, the value received and what is allowed. YAML is read
with PyYAML's safe loader only (libyaml's ``CSafeLoader`` when available, the same safe constructor):
a config can never instantiate a Python object.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airflow_mlops import settings
from airflow_mlops.config.schema import _TARGET_KIND_KEY, TARGET_OPTIONS, ModelConfig
from airflow_mlops.exceptions import ConfigError

CONFIG_SUFFIXES = (".yaml", ".yml")
#: libyaml's parser with PyYAML's safe constructor (no Python objects), when PyYAML was built with libyaml.
_FAST_SAFE_LOADER: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)
#: Texts both loaders read alike (see ``_parse_yaml``): printable ASCII but "!" and "?", line breaks, spaces.
_PLAIN_TEXT = re.compile(r"[\n\r\x20\x22-\x3e\x40-\x7e]*")
#: A block scalar header followed by "#" with no space: libyaml takes it as a comment, PyYAML refuses it.
_BLOCK_HEADER_COMMENT = re.compile(r"[|>][-+0-9]*#")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus where it came from."""

    path: Path
    config: ModelConfig
    #: sha256 of the canonical JSON of the validated config (stable under comments and key order).
    sha256: str

    @property
    def name(self) -> str:
        return self.config.name

    def resolve(self, location: str) -> str:
        """Resolve a path written in the config relative to the config file's folder; URIs pass through."""
        if "://" in location:
            return location
        path = Path(location).expanduser()
        return str(path if path.is_absolute() else (self.path.parent / path).resolve())

    def prediction_log(self) -> tuple[str | None, str | None]:
        """``(root, conn_id)`` of the model's prediction log: ``serving.prediction_log``, else the
        deployment-wide ``[mlops] prediction_log`` setting; ``root`` is ``None`` when neither is set."""
        serving = self.config.serving
        root = serving.prediction_log or settings.prediction_log_root()
        return (self.resolve(root) if root else None), serving.prediction_log_conn_id


@dataclass
class ConfigProblem:
    """One thing wrong with one file."""

    path: Path
    field: str
    got: Any
    allowed: str

    def __str__(self) -> str:
        where = f"{self.path}: {self.field}" if self.field else str(self.path)
        if self.got is _NOTHING:
            return f"{where}: {self.allowed}"
        return f"{where}: got {_show(self.got)}; {self.allowed}"


_NOTHING: Any = object()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _field_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed_text(error: Any, model_fields: dict[str, list[str]]) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "missing":
        return "this field is required"
    if kind == "extra_forbidden":
        parent = [p for p in error["loc"][:-1] if not isinstance(p, int)]  # list items share their model
        known = model_fields.get(_field_path(parent)) or model_fields.get(_field_path(parent[:-1]))  # dict values
        return f"unknown field; allowed fields here: {known}" if known else "unknown field"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return "expected: " + msg[0].lower() + msg[1:]


def _fields_by_path(model: type[Any], prefix: str = "") -> dict[str, list[str]]:
    """Map each nested model's field path to its allowed keys (for 'unknown field' messages)."""
    out: dict[str, list[str]] = {}
    names = [f.alias or n for n, f in model.model_fields.items()]
    out[prefix] = sorted(names)
    for name, info in model.model_fields.items():
        annotation = info.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                key = f"{prefix}.{info.alias or name}" if prefix else (info.alias or name)
                out.update(_fields_by_path(candidate, key))
    return out


_MODEL_FIELDS = _fields_by_path(ModelConfig)


def _without_target_tag(loc: list[Any]) -> tuple[list[Any], str | None]:
    """``loc`` without the union tag pydantic puts after ``target_options`` (which target's options), and the tag."""
    for i, part in enumerate(loc[:-1]):
        if part == "target_options" and loc[i + 1] in TARGET_OPTIONS:
            return [*loc[: i + 1], *loc[i + 2 :]], str(loc[i + 1])
    return loc, None


def problems_from_validation(
    path: Path, exc: ValidationError, model: type[BaseModel] = ModelConfig
) -> list[ConfigProblem]:
    """One problem per validation error of ``model`` (a config, or one section of it), named by field path."""
    fields = _MODEL_FIELDS if model is ModelConfig else _fields_by_path(model)
    problems = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if p not in ("function-after[_check_duration(), union[str,int]]",)]
        got = _NOTHING if error["type"] in ("missing",) else error.get("input", _NOTHING)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "value_error" and (not loc or message.startswith(f"{_field_path(loc)}.")):
            # model-level validator: the message already carries its field path when it has one
            problems.append(ConfigProblem(path, "", _NOTHING, message))
            continue
        loc, target_kind = _without_target_tag(loc)
        if isinstance(got, dict):
            got = {k: v for k, v in got.items() if k != _TARGET_KIND_KEY}
        if isinstance(got, dict) and error["type"] != "extra_forbidden" and error["type"] != "value_error":
            got = _NOTHING
        allowed = _allowed_text(error, fields)
        if target_kind is not None and error["type"] == "extra_forbidden":
            known = sorted(TARGET_OPTIONS[target_kind].model_fields)
            allowed = (
                f"unknown field; allowed {target_kind!r} options: {known}"
                if known
                else (f"unknown field; the {target_kind!r} target takes no options")
            )
        problems.append(ConfigProblem(path, _field_path(loc), got, allowed))
    return problems


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Load and validate one config file. Raises ``ConfigError`` listing every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read file: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from exc
    raw = _parse_yaml(path, text)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: got {_show(raw)}; expected a mapping of config fields at the top level")
    loaded = _validated(path, raw, path)
    stem = path.name.rsplit(".", 1)[0]
    if loaded.name != stem:
        raise ConfigError(f"{path}: name: got {loaded.name!r}; expected {stem!r} (the file name without suffix)")
    return loaded


def _parse_yaml(path: Path, text: str) -> Any:
    """``yaml.safe_load(text)``, through libyaml when PyYAML has it: about 10x faster, and every DAG-folder
    parse reads every config.

    Both loaders build with the same safe constructor and resolver; what differs is the scanner: libyaml
    accepts some texts PyYAML's rejects (a tab as separating whitespace, ``?`` keys in flow collections, a
    byte-order mark mid-text, ``|#``) and reads an empty ``!`` node differently. So only plain texts take
    libyaml: printable ASCII, line breaks and spaces, no tab, ``?``, ``!`` or ``|#`` (a fuzz of 120,000
    mutated configs found no difference in values or in what is accepted on those); anything else takes
    the pure-Python loader as before. On any error the text is parsed again by the pure-Python loader, so
    the message (problem, line, column) is the one it has always been.
    """
    if _FAST_SAFE_LOADER is not None and _PLAIN_TEXT.fullmatch(text) and not _BLOCK_HEADER_COMMENT.search(text):
        try:
            return yaml.load(text, Loader=_FAST_SAFE_LOADER)  # CSafeLoader: safe constructor
        except yaml.YAMLError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from exc


def _validated(label: Path, raw: Mapping[str, Any], path: Path) -> LoadedConfig:
    """Validate ``raw`` (problems named after ``label``) and hash its canonical JSON."""
    try:
        config = ModelConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError("\n".join(str(p) for p in problems_from_validation(label, exc))) from exc
    canonical = json.dumps(config.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return LoadedConfig(path=path, config=config, sha256=hashlib.sha256(canonical.encode()).hexdigest())


def load_inline_config(raw: Any, source: str) -> LoadedConfig:
    """Validate a config given as a mapping (a hand-written DAG's ``model_config``), with the same messages.

    ``source`` names where it came from in error messages (e.g. ``"train_model: model_config"``);
    relative paths in it resolve against the current directory.
    """
    label = Path(f"<{source}>")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{label}: got {_show(raw)}; expected a mapping of config fields")
    return _validated(label, raw, Path.cwd() / label.name)


def config_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The config files in ``directory`` (not recursive), sorted by name."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in CONFIG_SUFFIXES and p.is_file())


@dataclass
class LoadResult:
    """Outcome of loading a folder: the good configs, and a ``ConfigError`` per broken file."""

    configs: list[LoadedConfig] = field(default_factory=list)
    errors: dict[Path, ConfigError] = field(default_factory=dict)

    def __iter__(self) -> Iterator[LoadedConfig]:
        return iter(self.configs)


def load_configs(paths: Iterable[str | os.PathLike[str]]) -> LoadResult:
    """Load many files; one broken file never hides the others. Duplicate model names are errors."""
    result = LoadResult()
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            result.errors[path] = exc
            continue
        except Exception as exc:  # a loader bug on one file must not hide the other models' DAGs
            result.errors[path] = ConfigError(f"{path}: could not be validated: {type(exc).__name__}: {exc}")
            continue
        if loaded.name in seen:
            result.errors[path] = ConfigError(
                f"{path}: name: got {loaded.name!r}; expected a name not already used by {seen[loaded.name]}"
            )
            continue
        seen[loaded.name] = path
        result.configs.append(loaded)
    return result


def default_config_dir() -> Path:
    """The ``[mlops] config_dir`` setting, else ``dags/configs`` under the current directory."""
    return settings.config_dir()
