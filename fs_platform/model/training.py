"""The contact model (semantics §6): LightGBM on the training set, its metrics and baselines.

Why these pieces live together: a model is only useful with the exact feature list, category
levels and metrics it was judged by, so training returns all of them and the registry
(``fs_platform.model.registry``) stores them side by side.

- categoricals are pandas ``category`` with the *training* levels; unseen values at prediction
  time become missing (LightGBM's own handling), never a new code;
- early stopping on the validation days, metrics on the test days only;
- baselines on the same test days: the global positive rate of the training days (AUC 0.5 by
  construction, the log-loss/calibration floor) and an affinity-only LightGBM on
  ``user_category_affinity`` and ``user_city_affinity`` (what a hand-written rule would capture);
- a LightGBM ranker (lambdarank, one query per user and day) on the same features, reported beside
  the classifier by NDCG@10 over the same test queries. The classifier stays the served model:
  ``score`` returns probabilities and the promotion rule judges log loss, which a ranker's scores
  do not have (docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from fs_platform.retrieval.training_set import CATEGORICAL_FEATURES, FEATURES

AFFINITY_FEATURES: tuple[str, ...] = ("user_category_affinity", "user_city_affinity")

DEFAULT_PARAMS: dict = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "metric": ["binary_logloss", "auc"],
    "first_metric_only": True,
    "deterministic": True,
    "force_col_wise": True,
    "seed": 7,
    "verbose": -1,
}
MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50
#: the ranker: the classifier's tree settings with the lambdarank objective, judged by NDCG@10
RANKER_PARAMS: dict = {
    **{k: v for k, v in DEFAULT_PARAMS.items() if k not in ("objective", "metric")},
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
}
#: a query of the ranker and of NDCG@k: one user on one day
QUERY_COLUMNS: tuple[str, ...] = ("user_id", "example_date")
NDCG_AT = 10


# --- metrics -------------------------------------------------------------------------------------------


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties (a constant score gives exactly 0.5)."""
    y = np.asarray(y).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(score, dtype=float)).rank(method="average").to_numpy()
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (the step-wise area under the precision-recall curve), ties grouped."""
    y = np.asarray(y).astype(float)
    if y.sum() == 0:
        return float("nan")
    frame = pd.DataFrame({"s": np.asarray(score, dtype=float), "y": y})
    grouped = frame.groupby("s", sort=True)["y"].agg(["sum", "count"]).iloc[::-1]
    tp = grouped["sum"].cumsum().to_numpy()
    predicted = grouped["count"].cumsum().to_numpy()
    precision = tp / predicted
    recall_step = grouped["sum"].to_numpy() / y.sum()
    return float((precision * recall_step).sum())


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-mass bins of the predictions: mean prediction vs observed rate per bin.

    Equal-mass rather than equal-width because with a few-percent positive rate almost every
    prediction falls into the first of ten equal-width bins.
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), q=min(bins, len(frame)), labels=False)
    return frame.groupby("bin").agg(mean_p=("p", "mean"), rate=("y", "mean"), n=("y", "size"))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-mass bins of |mean prediction - observed rate| weighted by the bin's share."""
    if len(y) == 0:
        return float("nan")
    table = calibration_bins(y, p, bins)
    return float((table["n"] / table["n"].sum() * (table["mean_p"] - table["rate"]).abs()).sum())


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The four test metrics of semantics §6 (plus the base rates, to read them against)."""
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "log_loss": log_loss(y, p),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(np.mean(y)) if len(y) else float("nan"),
        "mean_prediction": float(np.mean(p)) if len(p) else float("nan"),
        "examples": int(len(y)),
    }


def ndcg_at_k(queries: np.ndarray, y: np.ndarray, score: np.ndarray, k: int = NDCG_AT) -> float:
    """Mean NDCG@k over the queries with at least one positive (binary gains, log2 discount).

    ``queries`` labels each row with its query; queries without a positive have no ideal ranking
    and are left out (LightGBM would count them as 1, which only flatters every model alike).
    Ties in ``score`` are broken by row order, so the figure is deterministic.
    """
    if not len(y):
        return float("nan")
    order = np.lexsort((np.arange(len(y)), -score, queries))
    q, labels = queries[order], y[order].astype(float)
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    ends = np.r_[starts[1:], len(q)]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for start, end in zip(starts, ends, strict=True):
        gains = labels[start:end]
        positives = int(gains.sum())
        if positives == 0:
            continue
        top = gains[:k]
        dcg = float(top @ discounts[: len(top)])
        ideal = float(discounts[: min(positives, k)].sum())
        values.append(dcg / ideal)
    return float(np.mean(values)) if values else float("nan")


def query_ids(frame: pd.DataFrame) -> np.ndarray:
    """One integer per (user, day) query, for ``ndcg_at_k`` and the ranker's groups."""
    return frame.groupby(list(QUERY_COLUMNS), sort=False, observed=True).ngroup().to_numpy()


# --- features -------------------------------------------------------------------------------------------


def category_levels(frame: pd.DataFrame, categorical: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """The sorted non-null values of each categorical column in the training rows."""
    return {name: sorted(frame[name].dropna().astype(str).unique().tolist()) for name in categorical}


def design_matrix(frame: pd.DataFrame, features: list[str], levels: dict[str, list[str]]) -> pd.DataFrame:
    """The model's input: numeric columns as float, categoricals as ``category`` with fixed levels."""
    out = pd.DataFrame(index=frame.index)
    for name in features:
        if name in levels:
            out[name] = pd.Categorical(frame[name], categories=levels[name])
        else:
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return out


@dataclass
class TrainedModel:
    """A booster with everything needed to use and judge it."""

    booster: lgb.Booster
    features: list[str]
    levels: dict[str, list[str]]
    params: dict
    best_iteration: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    feature_importance: dict[str, float] = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return predict(self.booster, frame, self.features, self.levels)


def predict(booster: lgb.Booster, frame: pd.DataFrame, features: list[str], levels: dict) -> np.ndarray:
    return booster.predict(
        design_matrix(frame, features, levels), num_iteration=booster.best_iteration or None
    )


def _fit(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    features: list[str],
    levels: dict,
    params: dict,
    max_rounds: int,
) -> lgb.Booster:
    categorical = [f for f in features if f in levels]
    train_set = lgb.Dataset(
        design_matrix(train, features, levels),
        label=train["label"].to_numpy(),
        categorical_feature=categorical or "auto",
        free_raw_data=False,
    )
    valid_set = lgb.Dataset(
        design_matrix(validation, features, levels),
        label=validation["label"].to_numpy(),
        reference=train_set,
    )
    return lgb.train(
        params,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
    )


def _fit_ranker(
    train: pd.DataFrame, validation: pd.DataFrame, features: list[str], levels: dict, max_rounds: int
) -> lgb.Booster:
    """lambdarank on queries of one user and day (rows sorted so each query is contiguous)."""
    categorical = [f for f in features if f in levels]

    def dataset(part: pd.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        part = part.sort_values(list(QUERY_COLUMNS), kind="stable")
        sizes = part.groupby(list(QUERY_COLUMNS), sort=False, observed=True).size().to_numpy()
        return lgb.Dataset(
            design_matrix(part, features, levels),
            label=part["label"].to_numpy(),
            group=sizes,
            categorical_feature=categorical or "auto",
            reference=reference,
            free_raw_data=False,
        )

    train_set = dataset(train)
    return lgb.train(
        RANKER_PARAMS,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[dataset(validation, train_set)],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
    )


def train(
    frame: pd.DataFrame,
    *,
    features: list[str] | None = None,
    params: dict | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> TrainedModel:
    """Fit on the train split, stop early on validation, report test metrics beside both baselines."""
    features = list(features or FEATURES)
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown features {unknown}; known: {list(FEATURES)}")
    params = {**DEFAULT_PARAMS, **(params or {})}
    parts = {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}
    for name, part in parts.items():
        if part.empty or part["label"].nunique() < 2:
            raise ValueError(f"the {name} split needs both positive and negative examples ({len(part)} rows)")
    train_rows, valid_rows, test_rows = parts["train"], parts["validation"], parts["test"]
    levels = category_levels(train_rows, [f for f in features if f in CATEGORICAL_FEATURES])
    booster = _fit(train_rows, valid_rows, features, levels, params, max_rounds)
    y_test = test_rows["label"].to_numpy()
    model_p = predict(booster, test_rows, features, levels)

    base_rate = float(train_rows["label"].mean())
    affinity = _fit(train_rows, valid_rows, list(AFFINITY_FEATURES), {}, params, max_rounds)
    affinity_p = predict(affinity, test_rows, list(AFFINITY_FEATURES), {})
    queries = query_ids(test_rows)
    ranker = _fit_ranker(train_rows, valid_rows, features, levels, max_rounds)
    ranker_scores = predict(ranker, test_rows, features, levels)
    metrics = {
        "model": {**evaluate(y_test, model_p), "ndcg_at_10": ndcg_at_k(queries, y_test, model_p)},
        "ranker": {
            "roc_auc": roc_auc(y_test, ranker_scores),
            "ndcg_at_10": ndcg_at_k(queries, y_test, ranker_scores),
            "best_iteration": int(ranker.best_iteration or ranker.current_iteration()),
            "examples": int(len(y_test)),
        },
        "validation": evaluate(
            valid_rows["label"].to_numpy(), predict(booster, valid_rows, features, levels)
        ),
        "baseline_global_rate": evaluate(y_test, np.full(len(y_test), base_rate)),
        "baseline_affinity_only": evaluate(y_test, affinity_p),
    }
    gain = booster.feature_importance(importance_type="gain")
    importance = {name: float(value) for name, value in zip(booster.feature_name(), gain, strict=True)}
    return TrainedModel(
        booster=booster,
        features=features,
        levels=levels,
        params=params,
        best_iteration=int(booster.best_iteration or booster.current_iteration()),
        metrics=metrics,
        feature_importance=importance,
    )
