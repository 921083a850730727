"""Thin Prefect tasks: read artifact references, call a stage's pure core, publish its outputs."""
