"""Monitoring: data drift between a stored reference and new data, in plain numpy and mergeable per partition."""
