"""Monitoring: Evidently drift reports, data-quality measures and alerting (DESIGN §8)."""
