"""The thin Dagster layer: one sub-package per asset group, each exporting its ``defs``."""
