"""Deployment: guarded alias moves over the MLflow registry, their audit trail, and deployment targets.

``audit`` keeps the append-only alias history MLflow does not keep; ``promotion`` moves the aliases
(promote, roll back, reject, canary, shadow) under a per-model lock; ``targets`` puts the local
gateway (and, later, the cloud endpoints) behind one ``DeploymentTarget`` interface for the DAGs.
"""
