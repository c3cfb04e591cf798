"""Build Airflow DAGs from model configs (cheap to import: no ML libraries)."""

from __future__ import annotations

from airflow_mlops.factories.build import build_dags

__all__ = ["build_dags"]
