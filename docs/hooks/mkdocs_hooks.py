"""MkDocs hooks (``hooks:`` in mkdocs.yml): generated reference pages and Airflow-style snippet markers.

- ``on_config``: swaps ``pymdownx.snippets`` for :class:`airflow_snippets.AirflowSnippetExtension`
  (same options) so ``# [START howto_...]`` sections of ``dags/examples/*.py`` can be included.
- ``on_page_markdown``: replaces the placeholders of :mod:`config_reference` with the model-config
  reference (from the pydantic schema), the ``[mlops]`` settings table (from ``settings.OPTIONS``) and the
  drift statistics' specification (``monitoring/drift.py``'s module docstring).
"""

from __future__ import annotations

from typing import Any

import config_reference  # docs/hooks/ is on sys.path while MkDocs loads this file
from airflow_snippets import AirflowSnippetExtension

_SNIPPETS = "pymdownx.snippets"


def on_config(config: Any) -> Any:
    extensions = config["markdown_extensions"]
    if _SNIPPETS not in extensions:
        raise ValueError(f"mkdocs.yml: markdown_extensions must list {_SNIPPETS} (the how-tos include example DAGs)")
    options = config["mdx_configs"].pop(_SNIPPETS, {})
    extensions[extensions.index(_SNIPPETS)] = AirflowSnippetExtension(**options)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if config_reference.CONFIG_PLACEHOLDER in markdown:
        markdown = markdown.replace(config_reference.CONFIG_PLACEHOLDER, config_reference.config_reference())
    if config_reference.SETTINGS_PLACEHOLDER in markdown:
        markdown = markdown.replace(config_reference.SETTINGS_PLACEHOLDER, config_reference.settings_reference())
    if config_reference.DRIFT_PLACEHOLDER in markdown:
        markdown = markdown.replace(config_reference.DRIFT_PLACEHOLDER, config_reference.drift_reference())
    return markdown
