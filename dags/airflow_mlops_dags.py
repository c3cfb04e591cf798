"""Every model in the [mlops] config_dir setting (default: dags/configs next to this file) gets its DAGs."""

from pathlib import Path

from airflow_mlops import settings
from airflow_mlops.factories import build_dags

build_dags(globals(), settings.config_dir(default=Path(__file__).parent / "configs"))
