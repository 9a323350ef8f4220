"""The training set's pandera contract rejects what must never reach the model (no database needed)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pytest

from fs_platform.retrieval.training_set import COLUMNS, TrainingSetSchema

UID = "6f1c2b1e-3c3a-4d7e-9a55-0b8f7d1f2a10"
LID = "2c3d5b09-d7ab-4307-aa92-0069819b4cf0"


def _valid() -> pd.DataFrame:
    t = pd.Timestamp("2026-02-28T10:00:00", tz="UTC")
    row = {
        "user_id": UID,
        "listing_id": LID,
        "example_date": "2026-02-28",
        "example_time": t,
        "features_as_of": pd.Timestamp("2026-02-28", tz="UTC"),
        "label": 1,
        "price_sensitivity": 0.4,
        "activity_score": 0.5,
        "price": 120.0,
        "price_pct": 0.3,
        "is_premium": 0.0,
        "image_count": 4.0,
        "day_of_week": 5,
        "hour_of_day": 10,
        "user_category_affinity": 0.7,
        "user_city_affinity": 0.0,
        "price_gap": 0.1,
        "device_type": "ios",
        "category_id": "cat_03",
        "city": None,
        "split": "test",
    }
    frame = pd.DataFrame([row, {**row, "listing_id": LID[:-1] + "1", "city": "krakow"}])[list(COLUMNS)]
    frame["example_time"] = frame["example_time"].astype("datetime64[us, UTC]")
    frame["features_as_of"] = frame["features_as_of"].astype("datetime64[us, UTC]")
    return frame.astype({"label": "int8", "day_of_week": "int8", "hour_of_day": "int8"})


def test_a_valid_frame_passes():
    TrainingSetSchema.validate(_valid(), lazy=True)


@pytest.mark.parametrize(
    ("column", "value", "failed_check"),
    [
        ("user_id", 12345, "holds_strings"),
        ("city", 3.5, "holds_strings"),
        ("user_id", "short", "str_length"),
        ("example_date", "28/02/2026", "str_matches"),
        ("device_type", "tablet", "isin"),
        ("split", "holdout", "isin"),
        ("price_pct", 1.5, "less_than_or_equal_to"),
        ("activity_score", 1.0, "less_than"),
        ("features_as_of", pd.Timestamp("2026-02-28T11:00:00", tz="UTC"), "snapshot_precedes_example"),
    ],
)
def test_violations_are_reported_by_name(column, value, failed_check):
    frame = _valid()
    frame[column] = frame[column].astype(object)
    frame.loc[0, column] = value
    if column == "features_as_of":
        frame[column] = frame[column].astype("datetime64[us, UTC]")
    with pytest.raises(pa.errors.SchemaErrors) as raised:
        TrainingSetSchema.validate(frame, lazy=True)
    assert failed_check in str(raised.value.failure_cases["check"].tolist())
