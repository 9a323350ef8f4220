"""Monitoring: Evidently drift reports, data-quality measures and alerting (semantics §8)."""
