"""Every model in $AIRFLOW_MLOPS_CONFIG_DIR (default: dags/configs next to this file) gets its DAGs."""

import os
from pathlib import Path

from airflow_mlops.factories import build_dags

build_dags(globals(), os.environ.get("AIRFLOW_MLOPS_CONFIG_DIR") or Path(__file__).parent / "configs")
