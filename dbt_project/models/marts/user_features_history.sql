{#
  One snapshot of every user's features per daily partition (as_of = cutoff T), built from the
  daily rollups of the window [T - window_days, T). Re-running a partition replaces its snapshot.
  `full_refresh=false`: a --full-refresh rebuilds the rollups from raw events but never wipes the
  other snapshots (drop the table by hand for a schema change).

  The daily run touches only what changed (exponential decay). Each rollup row carries its
  listing's attributes and percentile frozen at its day end, so from T - 1 day to T a user's window
  changes only through the day entering it (T - 1 day, plus the late-arrival days the rollups
  rebuilt) and the day leaving it. Those users are recomputed exactly from their rollups; everyone
  else keeps their shares and price_sensitivity, and their decayed sum S (activity_weight) is
  multiplied by 0.5^(1/h), which is exact for exponential decay. Without the previous day's snapshot,
  on --full-refresh and for linear decay (every weight moves by a different amount each day), the
  whole window is recomputed.

  A range run (a backfill S..T in one dbt invocation, FS_FEATURE_RANGE_START = S) inserts the
  snapshots S, S + 1 day, ..., T - 1 day in its pre-hook, each carried from the one before, then T's
  as usual; the snapshots are the same as those of the days run one by one (tested). The snapshot
  SQL itself is the macro user_features_snapshot.

  Appended after the pre-hook deleted T's rows (by as_of, through its index): dbt's delete+insert
  would delete "where as_of in (select as_of from the new rows)", a scan of every snapshot
  (~3 s at scale s).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        full_refresh=false,
        indexes=[{'columns': ['as_of']}],
        pre_hook="{{ replace_snapshots_up_to_cutoff() }}",
        post_hook="delete from {{ this }} where as_of < {{ cutoff_ts() }} - interval '{{ var('history_retention_days') | int }} days'",
    )
}}

{#- in a range run, T carries from T - 1 day, written by the pre-hook from this run's rollups -#}
{{ user_features_snapshot(cutoff_ts(), carry=snapshot_can_carry(), late_days=0 if range_cutoffs_before_cutoff() else none) }}
