#!/bin/bash
# One PostgreSQL for the stack, one database per owner: Airflow's metadata, MLflow's backend store and
# airflow-mlops' state (model locks, pending operations, the audit trail). Runs once, on an empty volume.
set -euo pipefail
for database in ${POSTGRES_EXTRA_DATABASES}; do
  echo "creating database ${database}"
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
    -c "CREATE DATABASE \"${database}\" OWNER \"${POSTGRES_USER}\""
done
