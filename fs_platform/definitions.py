"""The Dagster code location, assembled from the asset groups in ``fs_platform/defs``.

Read top to bottom it is the graph: files land in ``raw`` (ingestion), dbt turns them into daily
feature partitions (features), the marts are published to Redis (online_store), a training set and
a model are built from the history (model), any entity frame gets its point-in-time features
(retrieval), and checks and alerts watch all of it (monitoring).
"""

import dagster as dg

from fs_platform.defs import features, ingestion, model, monitoring, online_store, resources, retrieval

defs = dg.Definitions.merge(
    ingestion.defs,
    features.defs,
    online_store.defs,
    model.defs,
    retrieval.defs,
    monitoring.defs,
    resources.defs,
)
