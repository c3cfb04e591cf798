"""Sensors: wait on registry aliases, approvals, drift verdicts and prediction volume (deferrable or poke/reschedule).

Import each sensor from its module (``airflow_mlops.sensors.model_alias`` ...); this package imports nothing.
"""
