"""Quality gates: absolute thresholds, champion comparison, behaviour cases, slice gaps. Fail closed."""
