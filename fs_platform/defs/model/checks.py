"""The blocking promotion check of ``ctr_model``: a new model becomes ``current`` only if it earns it."""

import dagster as dg
import numpy as np

from fs_platform.defs.model.assets import CTR_MODEL
from fs_platform.model import workflow


@dg.asset_check(
    asset=CTR_MODEL,
    blocking=True,
    description="Promotes the new model only if it beats both baselines on its test days (ROC AUC above "
    "the affinity-only one's, log loss below the global rate's) and its test AUC is not worse than the "
    "current model's on the same days; otherwise fails and leaves `current` unchanged.",
)
def ctr_model_promotion(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(CTR_MODEL)
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no ctr_model materialization"})
    version = event.asset_materialization.metadata["version"].value
    decision = workflow.promote_if_better(str(version))
    context.log.info(decision.reason)
    return dg.AssetCheckResult(
        passed=decision.promoted,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "reason": decision.reason,
            "rule": decision.rule,
            "candidate": decision.candidate,
            "current_before": decision.current or "(none)",
            "candidate_roc_auc": float(decision.candidate_auc),
            "current_roc_auc": float(decision.current_auc) if decision.current_auc is not None else np.nan,
            "candidate_log_loss": float(decision.candidate_log_loss),
            "baseline_affinity_only_roc_auc": float(decision.baseline_auc),
            "baseline_global_rate_log_loss": float(decision.baseline_log_loss),
            "test_examples": decision.test_examples,
        },
    )
