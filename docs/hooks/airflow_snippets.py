"""``pymdownx.snippets`` that also reads Airflow's ``# [START name]`` / ``# [END name]`` section markers.

The example DAGs mark their how-to code the way Airflow's own system tests do; pymdownx only knows
``--8<-- [start:name]``. This subclass maps each Airflow marker line onto pymdownx's marker grammar, so
everything else (``check_paths``, ``dedent_subsections``, base paths) is pymdownx's own behaviour: a
``--8<-- "dags/examples/example_rollout.py:howto_operator_rollout"`` whose marker is missing fails the build.
"""

from __future__ import annotations

import re
from typing import Any

from pymdownx.snippets import SnippetExtension, SnippetPreprocessor

_AIRFLOW_MARKER = re.compile(r"^(?P<indent>\s*)#\s*\[(?P<type>START|END)\s+(?P<name>[A-Za-z][-_0-9A-Za-z]*)\]\s*$")


class AirflowSnippetPreprocessor(SnippetPreprocessor):  # type: ignore[misc]
    def match_section(self, line: str) -> Any:
        airflow = _AIRFLOW_MARKER.match(line)
        if airflow:
            line = f"{airflow['indent']}# --8<-- [{airflow['type'].lower()}:{airflow['name']}]"
        return super().match_section(line)


class AirflowSnippetExtension(SnippetExtension):  # type: ignore[misc]
    def extendMarkdown(self, md: Any) -> None:
        self.md = md
        md.registerExtension(self)
        md.preprocessors.register(AirflowSnippetPreprocessor(self.getConfigs(), md), "snippet", 32)
