"""The vocabulary of raw events, declared once.

Event types and their weights come from the dbt project's ``event_weights`` var (the analysts'
knob, next to the other feature parameters in ``dbt_project/dbt_project.yml``), so ingestion, the
dbt tests, the training-set label and the generator cannot disagree. Device types are an ingestion
contract only and live here.
"""

from __future__ import annotations

from functools import cache
from types import MappingProxyType

import yaml

from fs_platform.infra.dbt import DBT_PROJECT_DIR


@cache
def _dbt_vars() -> dict:
    return yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]


#: event type -> weight w of the feature formulas (impression 0: seen, not acted on)
EVENT_WEIGHTS: MappingProxyType[str, float] = MappingProxyType(
    {str(k): float(v) for k, v in _dbt_vars()["event_weights"].items()}
)
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_WEIGHTS)
DEVICE_TYPES: tuple[str, ...] = ("ios", "android", "web", "other")
#: events that make a (user, listing, day) example positive in the contact training set
POSITIVE_EVENT_TYPES: tuple[str, ...] = ("listing_contact_clicked", "listing_favorited")
