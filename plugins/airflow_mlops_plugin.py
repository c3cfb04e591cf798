"""Airflow plugins-folder entry for airflow-mlops: the "Models" page (``/mlops``) in the Airflow UI.

Copy this file into ``$AIRFLOW_HOME/plugins`` (``[core] plugins_folder``) of a deployment where the
``airflow-mlops`` package is importable. When the installed package already registers the plugin
through its ``airflow.plugins`` entry point, this file defines nothing: Airflow would otherwise see
the plugin name twice and report an import error for the second one.
"""

from __future__ import annotations

from airflow_mlops.ui.plugin import AirflowMlopsPlugin, entry_point_registered

if entry_point_registered():
    del AirflowMlopsPlugin  # loaded from the entry point instead
else:
    __all__ = ["AirflowMlopsPlugin"]
