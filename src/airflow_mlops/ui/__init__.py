"""The Models page in the Airflow 3 UI and the MLflow extra links of our operators.

* :mod:`.plugin` -- ``AirflowMlopsPlugin`` (FastAPI app under ``/mlops`` + "Models" nav entry);
* :mod:`.app` -- the FastAPI app (HTML pages and JSON API, every route authenticated);
* :mod:`.auth` -- Airflow JWT validation and per-model authorization;
* :mod:`.sources` -- reading configs, MLflow, the audit trail, the prediction log, pending approvals;
* :mod:`.data` -- pure functions building the page models; :mod:`.render` -- HTML and SVG charts;
* :mod:`.links` -- ``MlflowRunLink`` / ``MlflowModelVersionLink`` operator extra links.

Importing this package is cheap (no mlflow, pandas or ORM imports at module level).
"""
