"""Prefect flows: one per stage (`stages.py`), the pipeline that chains them, its config, deployments."""
