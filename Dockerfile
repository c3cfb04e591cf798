# The project's image: the official Airflow image plus airflow-mlops, installed against constraints.txt so
# the image runs the same resolved versions `make test` runs. Used by every Airflow service, the MLflow
# server and the serving gateway in docker-compose.yaml.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

ENV MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    GX_ANALYTICS_ENABLED=False \
    SCARF_ANALYTICS=false

COPY --chown=airflow:0 pyproject.toml README.md LICENSE constraints.txt /opt/airflow-mlops/
COPY --chown=airflow:0 src /opt/airflow-mlops/src
# Airflow itself stays at the image's version; everything else resolves inside constraints.txt (checked:
# this set resolves with `uv pip compile -c constraints.txt` for Python 3.11). Celery runs the workers, FAB
# is docker-compose.yaml's auth manager (both ship with the official image; named so they stay).
RUN pip install --no-cache-dir -c /opt/airflow-mlops/constraints.txt \
      "apache-airflow==${AIRFLOW_VERSION}" \
      "/opt/airflow-mlops[aws,azure,reports]" \
      apache-airflow-providers-celery \
      apache-airflow-providers-fab \
      psycopg2-binary
