"""Promotion rule: a new model becomes ``current`` only if it beats both baselines on its test days
and is not worse than the current model on the same days.

Why the baselines too: with no current model, the comparison with the current one is empty, and a
first model that loses to a two-feature affinity rule (or to predicting the training rate) must not
be served just because nothing was there before.

Why re-score the current model instead of reading its stored metrics: the stored metrics were
measured on *its* test days. The comparison must be on the candidate's test examples, so the
current model (with its own features and category levels) scores them again here. The baselines
were measured at training time on exactly these examples (the candidate's test split), so their
stored metrics are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fs_platform.model import registry as model_registry
from fs_platform.model.training import evaluate, log_loss

#: the candidate may lose at most this much ROC AUC against the current model (0: "not worse")
AUC_TOLERANCE = 0.0

#: which rule decided (``PromotionDecision.rule``)
RULE_ALREADY_CURRENT = "already current"
RULE_BASELINES = "baselines"
RULE_NO_CURRENT = "no current model"
RULE_CURRENT = "current model"


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    candidate: str
    current: str | None
    candidate_auc: float
    current_auc: float | None
    test_examples: int
    reason: str
    rule: str
    candidate_log_loss: float
    #: ROC AUC of the affinity-only baseline and log loss of the global-rate baseline, same examples
    baseline_auc: float
    baseline_log_loss: float


def decide_and_promote(
    candidate_version: str,
    test_rows: pd.DataFrame,
    root: Path | None = None,
    tolerance: float = AUC_TOLERANCE,
) -> PromotionDecision:
    """Promote the candidate iff on ``test_rows`` (its own test split) its ROC AUC is above the
    affinity-only baseline's, its log loss below the global-rate baseline's, and — if there is a
    current model — its ROC AUC is at least the current one's minus ``tolerance``."""
    candidate = model_registry.load(candidate_version, root)
    metrics = candidate.metadata["metrics"]
    y = test_rows["label"].to_numpy()
    if len(y) != metrics["model"]["examples"]:
        raise ValueError(
            f"{len(y)} test rows given, but {candidate_version} was tested on {metrics['model']['examples']}: "
            "pass the candidate's own test split (its baselines were measured there)"
        )
    measured = evaluate(y, candidate.predict(test_rows))
    auc, loss = measured["roc_auc"], measured["log_loss"]
    baseline_auc = float(metrics["baseline_affinity_only"]["roc_auc"])
    # the global-rate baseline predicts the training days' positive rate for every example
    baseline_loss = log_loss(y, np.full(len(y), metrics["baseline_global_rate"]["mean_prediction"]))
    current = model_registry.load_current(root)

    def decision(
        promoted: bool, rule: str, reason: str, current_auc: float | None = None
    ) -> PromotionDecision:
        if promoted and rule != RULE_ALREADY_CURRENT:
            model_registry.promote(candidate_version, root)
        return PromotionDecision(
            promoted,
            candidate_version,
            current.version if current else None,
            auc,
            current_auc,
            len(y),
            reason,
            rule,
            loss,
            baseline_auc,
            baseline_loss,
        )

    if current is not None and current.version == candidate_version:
        return decision(True, RULE_ALREADY_CURRENT, "already current", auc)
    if not (auc > baseline_auc and loss < baseline_loss):
        return decision(
            False,
            RULE_BASELINES,
            f"refused by the baseline rule: AUC {auc:.4f} vs affinity-only {baseline_auc:.4f} (must be above), "
            f"log loss {loss:.4f} vs global rate {baseline_loss:.4f} (must be below)",
        )
    beats = (
        f"beats the baselines (AUC {auc:.4f} > {baseline_auc:.4f}, log loss {loss:.4f} < {baseline_loss:.4f})"
    )
    if current is None:
        return decision(True, RULE_NO_CURRENT, f"promoted: no current model and {beats}")
    current_auc = evaluate(y, current.predict(test_rows))["roc_auc"]
    if auc >= current_auc - tolerance:
        reason = f"promoted: AUC {auc:.4f} >= current {current_auc:.4f} on the same test days and {beats}"
        return decision(True, RULE_CURRENT, reason, current_auc)
    reason = (
        f"refused by the current-model rule: AUC {auc:.4f} < current {current_auc:.4f} on the same test days"
    )
    return decision(False, RULE_CURRENT, reason, current_auc)
