"""``AirflowMlopsPlugin``: the Models page in the Airflow 3 UI.

* ``fastapi_apps``: :func:`airflow_mlops.ui.app.create_app` mounted by the api-server under ``/mlops``
  (the app authenticates every request itself: plugin apps are not behind Airflow's auth);
* ``external_views``: a top-level "Models" entry in the UI's navigation; with ``url_route`` the UI
  shows the page inside its own frame at ``/plugin/models`` (``href`` honours ``[api] base_url``).

Registered through the ``airflow.plugins`` entry point of the installed package; the file
``plugins/airflow_mlops_plugin.py`` offers it to a plugins folder instead, and steps aside when the
entry point is installed (Airflow refuses a plugin name registered twice).

Operator extra links are not registered here: they are declared on the operators
(:mod:`airflow_mlops.ui.links` explains why).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.plugins_manager import AirflowPlugin

from airflow_mlops.ui.app import create_app

PLUGIN_NAME = "airflow-mlops"
URL_PREFIX = "/mlops"
NAV_ROUTE = "models"
ENTRY_POINT_GROUP = "airflow.plugins"
ENTRY_POINT_VALUE = "airflow_mlops.ui.plugin:AirflowMlopsPlugin"

# a small "stacked layers" glyph, inline: the nav icon needs no network fetch
_ICON_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='{color}' stroke-width='2' "
    "stroke-linecap='round' stroke-linejoin='round'><path d='M12 2 2 7l10 5 10-5-10-5z'/>"
    "<path d='m2 17 10 5 10-5'/><path d='m2 12 10 5 10-5'/></svg>"
)
ICON = "data:image/svg+xml," + quote(_ICON_SVG.format(color="#4a5568"), safe="")
ICON_DARK = "data:image/svg+xml," + quote(_ICON_SVG.format(color="#cbd5e0"), safe="")


def api_root_path() -> str:
    """The path of ``[api] base_url`` (``/`` by default), ending in ``/``."""
    from airflow.configuration import conf

    path = urlsplit(conf.get("api", "base_url", fallback="") or "").path or "/"
    return path if path.endswith("/") else path + "/"


def models_href() -> str:
    return f"{api_root_path()}{URL_PREFIX.strip('/')}/"


def nav_view() -> dict[str, Any]:
    return {
        "name": "Models",
        "href": models_href(),
        "url_route": NAV_ROUTE,
        "destination": "nav",
        "nav_top_level": True,
        "icon": ICON,
        "icon_dark_mode": ICON_DARK,
    }


def entry_point_registered() -> bool:
    """Whether an installed distribution declares this plugin in the ``airflow.plugins`` entry points."""
    return any(ep.value.replace(" ", "") == ENTRY_POINT_VALUE for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


class AirflowMlopsPlugin(AirflowPlugin):
    """Models page (FastAPI app under ``/mlops``) and its navigation entry."""

    name = PLUGIN_NAME
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": PLUGIN_NAME}]
    external_views = [nav_view()]
    operator_extra_links: list[Any] = []
    global_operator_extra_links: list[Any] = []
