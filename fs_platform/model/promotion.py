"""Promotion rule: a new model replaces the current one only if it is not worse on the same days.

Why re-score the current model instead of reading its stored metrics: the stored metrics were
measured on *its* test days. The comparison must be on the candidate's test examples, so the
current model (with its own features and category levels) scores them again here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fs_platform.model import registry as model_registry
from fs_platform.model.training import evaluate

#: the candidate may lose at most this much ROC AUC (0: "not worse")
AUC_TOLERANCE = 0.0


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    candidate: str
    current: str | None
    candidate_auc: float
    current_auc: float | None
    test_examples: int
    reason: str


def decide_and_promote(
    candidate_version: str,
    test_rows: pd.DataFrame,
    root: Path | None = None,
    tolerance: float = AUC_TOLERANCE,
) -> PromotionDecision:
    """Score the candidate and the current model on ``test_rows``; promote the candidate if its
    ROC AUC is at least the current one's minus ``tolerance`` (or if there is no current model)."""
    candidate = model_registry.load(candidate_version, root)
    y = test_rows["label"].to_numpy()
    candidate_auc = evaluate(y, candidate.predict(test_rows))["roc_auc"]
    current = model_registry.load_current(root)
    if current is None:
        model_registry.promote(candidate_version, root)
        return PromotionDecision(
            True, candidate_version, None, candidate_auc, None, len(y), "no current model: promoted"
        )
    if current.version == candidate_version:
        return PromotionDecision(
            True, candidate_version, current.version, candidate_auc, candidate_auc, len(y), "already current"
        )
    current_auc = evaluate(y, current.predict(test_rows))["roc_auc"]
    if candidate_auc >= current_auc - tolerance:
        model_registry.promote(candidate_version, root)
        reason = f"promoted: AUC {candidate_auc:.4f} >= current {current_auc:.4f} on the same test days"
        return PromotionDecision(
            True, candidate_version, current.version, candidate_auc, current_auc, len(y), reason
        )
    reason = f"refused: AUC {candidate_auc:.4f} < current {current_auc:.4f} on the same test days"
    return PromotionDecision(
        False, candidate_version, current.version, candidate_auc, current_auc, len(y), reason
    )
