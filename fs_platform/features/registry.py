"""The feature registry: what each feature is, read from the dbt manifest (yml descriptions + meta)."""

from __future__ import annotations

import json

from fs_platform.infra.dbt import ensure_manifest

REGISTRY_MODELS = ("user_features", "listing_features")


def feature_registry() -> list[dict]:
    """One entry per feature column of the serving marts (keys and bookkeeping columns excluded)."""
    manifest = json.loads(ensure_manifest().read_text())
    entries = []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["name"] not in REGISTRY_MODELS:
            continue
        model_meta = node.get("config", {}).get("meta", {})
        for column in node["columns"].values():
            meta = column.get("meta") or column.get("config", {}).get("meta", {})
            if "feature_type" not in meta:
                continue
            entries.append(
                {
                    "model": node["name"],
                    "feature": column["name"],
                    "type": meta["feature_type"],
                    "data_type": column.get("data_type"),
                    "validation_range": meta.get("validation_range", ""),
                    "owner": model_meta.get("owner", ""),
                    "tags": model_meta.get("tags", []),
                    "description": column.get("description", ""),
                }
            )
    return sorted(entries, key=lambda e: (e["model"], e["feature"]))


def format_registry(entries: list[dict]) -> str:
    header = f"{'model':18} {'feature':18} {'type':12} {'range':22} description"
    lines = [header, "-" * len(header)]
    for e in entries:
        lines.append(
            f"{e['model']:18} {e['feature']:18} {e['type']:12} {e['validation_range']:22} {e['description']}"
        )
    return "\n".join(lines)
