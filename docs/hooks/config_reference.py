"""Markdown reference of the model-config schema and of the ``[mlops]`` settings, generated from the code.

The docs build (``docs/hooks/mkdocs_hooks.py``) replaces placeholders with :func:`config_reference` and
:func:`settings_reference`, so the reference cannot drift from ``airflow_mlops.config.schema`` or
``airflow_mlops.settings.OPTIONS``. Everything a field says comes from the code:

- its YAML key (the alias where there is one), type, default and constraints from pydantic's ``FieldInfo``;
- its description from ``Field(description=...)`` and from the ``#:`` comment lines right above it;
- each section's text from the model's docstring, and its rules from the messages the model's
  validators raise.
"""

from __future__ import annotations

import ast
import html
import inspect
import json
import re
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = [
    "Section",
    "config_reference",
    "docstring_markdown",
    "drift_reference",
    "field_paths",
    "render_model_reference",
    "settings_reference",
    "walk",
]

#: Placeholders the mkdocs hook replaces.
CONFIG_PLACEHOLDER = "<!-- generated: config-reference -->"
SETTINGS_PLACEHOLDER = "<!-- generated: settings-reference -->"
DRIFT_PLACEHOLDER = "<!-- generated: drift-docstring -->"


@dataclass
class Section:
    """One model reached at ``path`` (``""`` for the root) and the rows of its fields."""

    path: str
    model: type[BaseModel]
    rows: list[dict[str, str]] = field(default_factory=list)
    #: For one model of a tagged union: its tag (e.g. the target kind whose options it holds).
    tag: str | None = None


def _key(name: str, info: FieldInfo) -> str:
    return info.alias or name


def _nested_models(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """``(suffix, model)`` for every pydantic model inside a field's type: ``""``, ``"[]"`` or ``".<key>"``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        yield "", annotation
    elif origin is Annotated:
        yield from _nested_models(args[0])
    elif origin in (Union, types.UnionType):
        for arg in args:
            yield from _nested_models(arg)
    elif origin in (list, tuple, set, frozenset):
        for arg in args:
            for suffix, model in _nested_models(arg):
                yield "[]" + suffix, model
    elif origin is dict:
        for suffix, model in _nested_models(args[1]):
            yield ".<key>" + suffix, model


def walk(model: type[BaseModel], path: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """Every ``(path, model)`` reachable from ``model``, depth first, the root first."""
    yield path, model
    for name, info in model.model_fields.items():
        child = f"{path}.{_key(name, info)}" if path else _key(name, info)
        for suffix, nested in _nested_models(info.annotation):
            yield from walk(nested, child + suffix)


def field_paths(model: type[BaseModel]) -> list[str]:
    """The dotted path of every field of ``model`` and of the models nested in it."""
    return [
        f"{path}.{_key(name, info)}" if path else _key(name, info)
        for path, sub in walk(model)
        for name, info in sub.model_fields.items()
    ]


# --- types and constraints --------------------------------------------------------------------------------------


def _is_duration(metadata: list[Any]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func.__name__ == "_check_duration" for m in metadata)


_BOUNDS: tuple[tuple[type[Any], str, str], ...] = (
    (at.Gt, "gt", "> {}"),
    (at.Ge, "ge", "≥ {}"),
    (at.Lt, "lt", "< {}"),
    (at.Le, "le", "≤ {}"),
    (at.MinLen, "min_length", "length ≥ {}"),
    (at.MaxLen, "max_length", "length ≤ {}"),
    (at.MultipleOf, "multiple_of", "multiple of {}"),
)


def _number(value: Any) -> str:
    """``0`` and ``0.0`` alike as ``0`` (pydantic may hand back either for the same bound), ``0.5`` as is."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _constraint_texts(metadata: list[Any]) -> list[str]:
    out: list[str] = []
    for item in metadata:
        bound = next(
            (fmt.format(_number(getattr(item, attr))) for kind, attr, fmt in _BOUNDS if isinstance(item, kind)), None
        )
        if bound is not None:
            out.append(bound)
        elif getattr(item, "pattern", None):
            out.append(f"matches `{item.pattern}`")
        elif isinstance(item, FieldInfo):
            out.extend(_constraint_texts(item.metadata))
    return out


def render_type(annotation: Any, links: Iterator[str] | None = None) -> str:
    """A field's type in words: ``list of number (> 0, ≤ 100)``, ``"csv" or "parquet"``, ``duration``.

    ``links`` gives, in order, the anchor of each nested model's section (see :func:`_nested_models`).
    """
    links = links if links is not None else iter(())
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if origin is Annotated:
        metadata = list(annotation.__metadata__)
        if _is_duration(metadata):
            return "[duration](#durations)"
        inner = render_type(args[0], links)
        limits = _constraint_texts(metadata)
        return f"{inner} ({', '.join(limits)})" if limits else inner
    if origin is Literal:
        return " or ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(render_type(a, links) for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {render_type(args[0], links)}" if args else "list"
    if origin is dict:
        return f"mapping of {render_type(args[0], links)} to {render_type(args[1], links)}" if args else "mapping"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        anchor = next(links, None)
        return f"[section](#{anchor})" if anchor else "section"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _yaml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "see its fields"
    return f"`{json.dumps(value, default=str)}`"


def render_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return _yaml_value(info.default_factory())  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return "**required**"
    return _yaml_value(info.default)


# --- descriptions: ``#:`` comments, docstrings and validator messages from the source ------------------------------


def _source(model: type[BaseModel]) -> tuple[ast.ClassDef, list[str]] | None:
    try:
        lines, _ = inspect.getsourcelines(model)
    except (OSError, TypeError):
        return None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = tree.body[0]
    return (node, lines) if isinstance(node, ast.ClassDef) else None


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """``{field name: text}`` from the ``#:`` comment lines directly above each field of ``model``'s own body."""
    found = _source(model)
    if found is None:
        return {}
    node, lines = found
    out: dict[str, str] = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            comment: list[str] = []
            index = stmt.lineno - 2  # the line above, 0-based
            while index >= 0 and lines[index].strip().startswith("#:"):
                comment.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            if comment:
                out[stmt.target.id] = " ".join(comment)
    return out


def _message(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    return None


def validator_rules(model: type[BaseModel]) -> list[str]:
    """The messages the model's own validators raise (``ValueError``), as the rules a config must follow."""
    found = _source(model)
    if found is None:
        return []
    node, _ = found
    rules: list[str] = []
    for stmt in node.body:
        if not isinstance(stmt, ast.FunctionDef):
            continue
        decorators = [d.func for d in stmt.decorator_list if isinstance(d, ast.Call)]
        names = [d.id if isinstance(d, ast.Name) else getattr(d, "attr", "") for d in decorators]
        if not any(n in ("field_validator", "model_validator") for n in names):
            continue
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Raise) and isinstance(sub.exc, ast.Call) and sub.exc.args:
                text = _message(sub.exc.args[0])
                if text and text not in rules:
                    rules.append(text)
    return rules


def _doc(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")
    return inspect.cleandoc(own) if own else ""


def _pipes(text: str) -> str:
    """Markdown (links, code spans) for a table cell: pipes escaped, one line."""
    return text.replace("|", "\\|").replace("\n", " ")


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped, and ``<``/``>``/``_``/``*`` literal outside code spans."""
    out, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        out.append(html.escape(text[last : match.start()], quote=False).replace("_", "\\_").replace("*", "\\*"))
        out.append(match.group(0))
        last = match.end()
    out.append(html.escape(text[last:], quote=False).replace("_", "\\_").replace("*", "\\*"))
    return _pipes("".join(out))


# --- rendering ---------------------------------------------------------------------------------------------------


def _anchor(path: str, tag: str | None = None) -> str:
    anchor = "config-" + ("".join(c if c.isalnum() else "-" for c in path).strip("-") or "top-level")
    return f"{anchor}-{tag}" if tag else anchor


def _full_annotation(info: FieldInfo) -> Any:
    """The field's annotation with the constraints pydantic moved into ``metadata`` put back."""
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _union_tags(annotation: Any) -> dict[type[BaseModel], str]:
    """The tag of each model in a tagged union (``Annotated[Model, Tag("sagemaker")]``): which variant it is."""
    from pydantic import Tag

    found: dict[type[BaseModel], str] = {}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        tags = [m.tag for m in args[1:] if isinstance(m, Tag)]
        if tags and inspect.isclass(args[0]) and issubclass(args[0], BaseModel):
            found[args[0]] = tags[0]
        found.update(_union_tags(args[0]))
    elif origin in (Union, types.UnionType):
        for arg in args:
            found.update(_union_tags(arg))
    return found


def _all_union_tags(model: type[BaseModel]) -> dict[type[BaseModel], str]:
    found: dict[type[BaseModel], str] = {}
    for _, sub in walk(model):
        for info in sub.model_fields.values():
            found.update(_union_tags(info.annotation))
    return found


def sections(model: type[BaseModel]) -> list[Section]:
    """One section per path; a model reached at two paths is listed at both. The models of a tagged union at
    one path (``rollout.target_options``: one per target) get a section each, titled by their tag."""
    out = []
    tagged = _all_union_tags(model)
    for path, sub in walk(model):
        comments = field_comments(sub)
        section = Section(path, sub, tag=tagged.get(sub))
        for name, info in sub.model_fields.items():
            key = _key(name, info)
            row_path = f"{path}.{key}" if path else key
            links = iter(
                [_anchor(row_path + suffix, tagged.get(nested)) for suffix, nested in _nested_models(info.annotation)]
            )
            description = " ".join(t for t in (info.description, comments.get(name)) if t)
            section.rows.append(
                {
                    "path": row_path,
                    "type": render_type(_full_annotation(info), links),
                    "default": render_default(info),
                    "description": description,
                }
            )
        out.append(section)
    return out


def render_model_reference(model: type[BaseModel], *, heading_level: int = 2) -> str:
    """Markdown: per (nested) model a heading with its path, its docstring, a field table and its rules."""
    hashes = "#" * heading_level
    out: list[str] = []
    for section in sections(model):
        title = f"`{section.path}`" if section.path else "Top level"
        if section.tag:
            title += f" for `{section.tag}`"
        out.append(f"{hashes} {title} {{ #{_anchor(section.path, section.tag)} }}\n")
        doc = _doc(section.model)
        if doc:
            out.append(_cell(doc.replace("\n\n", "\x00")).replace("\x00", "\n\n") + "\n")
        out.append("| field | type | default | description |")
        out.append("|---|---|---|---|")
        out.extend(
            f"| `{_pipes(row['path'])}` | {_pipes(row['type'])} | {_pipes(row['default'])} "
            f"| {_cell(row['description'])} |"
            for row in section.rows
        )
        rules = validator_rules(section.model)
        if rules:
            out.append("\nChecked when the config loads:\n")
            out.extend(f"- {_cell(rule)}" for rule in rules)
        out.append("")
    return "\n".join(out)


def config_reference() -> str:
    """The reference of ``airflow_mlops.config.schema.ModelConfig``, plus the metric names and duration format."""
    from airflow_mlops.config import schema

    metrics = (
        "\n## Metric names { #metrics }\n\n"
        f"- classification: {', '.join(f'`{m}`' for m in schema.CLASSIFICATION_METRICS)}\n"
        f"- regression: {', '.join(f'`{m}`' for m in schema.REGRESSION_METRICS)}\n"
        f"- lower is better: {', '.join(f'`{m}`' for m in sorted(schema.LOWER_IS_BETTER))}; "
        "every other metric is higher-is-better.\n"
        f"- `estimator.class` must start with one of {', '.join(f'`{p}`' for p in schema.DEFAULT_ESTIMATOR_PREFIXES)} "
        "or a prefix from the `[mlops] estimator_allowlist` setting; a prefix ends at a dot (`mypkg` allows "
        "`mypkg.Est`, never `mypkg_evil.Est`).\n"
        f"- `estimator.params` may not set {', '.join(f'`{p}`' for p in sorted(schema.FORBIDDEN_ESTIMATOR_PARAMS))} "
        "(a joblib cache folder of the config's choosing, whose pickles would be loaded back).\n"
    )
    durations = (
        "\n## Durations { #durations }\n\n"
        f"A duration is {_cell(inspect.cleandoc(schema.parse_duration.__doc__ or '').split(' -> ')[0])}; "
        "it is checked when the config loads.\n"
    )
    return render_model_reference(schema.ModelConfig) + metrics + durations


def settings_reference() -> str:
    """The ``[mlops]`` options table from ``airflow_mlops.settings.OPTIONS``."""
    from airflow_mlops import settings

    out = [
        "| option | type | default | environment variables | example | description |",
        "|---|---|---|---|---|---|",
    ]
    for option in settings.OPTIONS.values():
        default = f"`{option.default}`" if option.default is not None else "unset"
        sensitive = " Sensitive: Airflow masks it." if option.sensitive else ""
        example = f"`{option.example}`" if option.example else ""
        out.append(
            f"| `{option.key}` | {option.type} | {_pipes(default)} | `{option.env}`, `{option.airflow_env}` | "
            f"{_pipes(example)} | {_cell(option.description + sensitive)} |"
        )
    return "\n".join(out) + "\n"


_ROLE = re.compile(r":(?:data|func|class|mod|meth|attr):`~?([^`]+)`")


def docstring_markdown(doc: str) -> str:
    """A reST-flavoured module docstring as Markdown: ``::`` blocks stay indented code, roles become code."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", inspect.cleandoc(doc))
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def drift_reference() -> str:
    """The module docstring of ``airflow_mlops.monitoring.drift``: the specification of the statistics."""
    from airflow_mlops.monitoring import drift

    return docstring_markdown(drift.__doc__ or "")
