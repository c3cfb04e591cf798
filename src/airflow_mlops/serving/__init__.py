"""The serving gateway: routes requests to champion/canary/shadow versions from the MLflow registry."""
