"""Training: build the estimator from config, split deterministically, fit, evaluate, log to MLflow."""
