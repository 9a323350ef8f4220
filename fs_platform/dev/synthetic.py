"""Seeded, fully vectorised synthetic marketplace: listings, interaction events and ground truth.

Why it exists: the feature store needs realistic data at several sizes (CI, demo, load test) whose
*true* engagement probabilities are known, so the ranking model trained downstream can be judged
against the best achievable score, and so drift detectors can be exercised with known drifts.

The model (semantics §9), in brief:

* cities have Zipf popularity; categories have their own log-normal price distributions;
* users have a home city (Zipf, with some travel), a few preferred categories (Dirichlet weights),
  a preferred price percentile, a loyal device and a heavy-tailed (log-normal) activity level;
* sessions per user and day are Poisson(activity x weekday factor), started at an hour drawn from a
  daily profile (evening peak, night trough); each session shows a handful of impressions of
  listings drawn from the user's preferred categories/home city with some exploration;
* every impression turns *positive* (favourite and/or contact) with
  ``p = sigmoid(linear score of category affinity, city match, price-percentile gap, premium,
  log1p(image_count), device, hour)``. A positive impression is always viewed first; non-positive
  impressions are viewed with a second logistic probability;
* ``ground_truth.true_p`` is the probability that the (user, listing) pair turns positive that day
  *given what is known at its first impression* (the example time of semantics §5): that impression's
  ``p`` combined with the expected chances of the pair being shown again later that day under this
  same process (rest of the session, later sessions). It is not ``1 - prod(1 - p_i)`` over the
  impressions the day turned out to have: how often the pair was shown after the example time is
  not knowable at that time, and an oracle that uses it scores an AUC no model could reach.

All randomness comes from ``numpy.random.SeedSequence(seed)`` sub-streams (one per purpose and one
per day), so the same arguments give bit-identical frames, and a drifted run shares everything before
``drift_from`` with the undrifted run of the same seed (a clean counterfactual).

Column conventions: id/text columns are plain ``object`` columns of Python ``str``; timestamps are
``datetime64[us, UTC]``; ``ground_truth.day`` is ``datetime64[us]`` (naive, midnight of the UTC day).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from fs_platform.ingestion.vocabulary import DEVICE_TYPES, EVENT_TYPES

__all__ = [
    "DEVICE_TYPES",
    "DRIFT_KINDS",
    "EVENT_TYPES",
    "SCALES",
    "ScaleSpec",
    "SyntheticData",
    "content_hash",
    "generate",
    "write_parquet",
]

DRIFT_KINDS = ("category_shift", "price_inflation", "device_shift")


@dataclass(frozen=True)
class ScaleSpec:
    """Size knobs of one scale; behavioural parameters (funnel, cycles) are shared by all scales."""

    users: int
    listings: int
    default_days: int
    categories: int
    cities: int
    #: mean sessions per user per day (before the weekday factor); the activity level is log-normal around it
    sessions_per_user_day: float
    #: mean impressions per session (1 + negative binomial, over-dispersed)
    impressions_per_session: float = 8.0
    #: share of listings created before the first generated day (the rest appear during the period)
    prelisted_fraction: float = 0.6


#: ``xs`` is denser per user than ``s``/``m`` so CI gets ~100k events (stable statistics) from few users.
#: Its listing flow is s-like too: 30k listings appear during the period (~450 a day over the 66-72 days
#: the drift checks run on, s has ~330), so listing-level monitors (the new-supply price level, where a
#: 15% price inflation shows, docs/monitoring.md) have the sample they have in production; 1,200
#: listings gave ~7 new a day, too few for any test to see a 15% rise.
SCALES: dict[str, ScaleSpec] = {
    "xs": ScaleSpec(
        users=2_000,
        listings=50_000,
        default_days=28,
        categories=12,
        cities=15,
        sessions_per_user_day=0.2,
        prelisted_fraction=0.4,
    ),
    "s": ScaleSpec(
        users=100_000,
        listings=100_000,
        default_days=120,
        categories=40,
        cities=60,
        sessions_per_user_day=0.093,
    ),
    "m": ScaleSpec(
        users=1_000_000,
        listings=1_000_000,
        default_days=120,
        categories=40,
        cities=120,
        sessions_per_user_day=0.093,
    ),
}

_US_PER_SECOND = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_SECOND

# --- behavioural parameters ------------------------------------------------------------------------------

#: target device mix (ios, android, web, other), in the order of DEVICE_TYPES
_DEVICE_MIX = np.array([0.30, 0.45, 0.22, 0.03])
#: probability that a session uses the user's own device rather than a random one
_DEVICE_LOYALTY = 0.7
#: device_shift drift: points moved from android to ios
_DEVICE_SHIFT_POINTS = 0.20
#: session start weight per UTC hour: night trough, evening peak
_HOUR_PROFILE = np.array(
    [0.9, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.2, 1.8, 2.2, 2.4, 2.6]
    + [2.8, 2.8, 2.7, 2.7, 2.9, 3.3, 4.0, 4.6, 4.8, 4.3, 3.2, 1.8]
)
_HOUR_P = _HOUR_PROFILE / _HOUR_PROFILE.sum()
#: session rate multiplier by weekday (Monday = 0): weekends busier
_WEEKDAY_FACTOR = np.array([0.95, 0.95, 0.97, 1.0, 1.02, 1.22, 1.30])
_ACTIVITY_SIGMA = 1.6  # log-normal sigma of user activity: most users rare, a few very active
_MAX_SESSIONS_PER_DAY = 6.0
_TOP_CATEGORIES = 3  # preferred categories per user
_PREF_DIRICHLET = 0.6
_EXPLORE = 0.2  # share of impressions drawn from global category popularity
_TRAVEL = 0.15  # share of impressions from a city other than the home city (popularity-weighted)
_MAX_IMPRESSIONS = 60  # per session; with capped delays a session always fits in a day
_RECENCY_POWER = 2.0  # impressions favour recent listings: index from newest = n * u**power
_PRICE_NULL = 0.03
_PREMIUM = 0.08
_CITY_ZIPF = 1.0
_CATEGORY_ZIPF = 0.6
_PRICE_INFLATION = 1.15
_CATEGORY_SHIFT_SHARE = 0.20
_PRELIST_DAYS = 180  # pre-existing listings were created over this many days before the first day
_NULL_PRICE_GAP = 0.35  # neutral price gap for price-on-request listings

# Funnel timing (seconds): impressions are seconds apart; view, favourite and contact follow.
_IMP_GAP_S = (1.0, 20.0)  # (minimum, exponential mean)
_VIEW_DELAY_S = (2.0, 15.0)
_FAV_DELAY_S = (4.0, 45.0)
_CONTACT_DELAY_S = (6.0, 90.0)
_MAX_DELAY_S = 900.0

# Logistic models. Features: category affinity (user's weight of the listing's category, 0..1), city match,
# |listing price percentile - user's preferred percentile|, premium, log1p(image_count), device, hour band.
_POS = {"bias": -7.2, "cat": 3.3, "city": 0.8, "gap": -2.0, "premium": 0.7, "img": 0.45}
_VIEW = {"bias": -3.75, "cat": 2.5, "city": 0.6, "gap": -2.8, "premium": 0.3, "img": 0.2}
_POS_DEVICE = np.array([0.25, 0.0, -0.2, -0.5])  # ios, android, web, other
_VIEW_DEVICE = np.array([0.1, 0.0, 0.1, -0.2])
_EVENING = (18, 23)  # [start, end) UTC hours with an engagement bonus
_NIGHT = (0, 6)
_POS_HOUR = (0.3, -0.4)  # evening bonus, night penalty
_VIEW_HOUR = (0.1, -0.15)
#: outcome of a positive impression: favourite only / contact only / both
_P_FAV_ONLY, _P_CONTACT_ONLY = 0.55, 0.25

_CITY_NAMES = [
    "warszawa",
    "krakow",
    "wroclaw",
    "lodz",
    "poznan",
    "gdansk",
    "szczecin",
    "bydgoszcz",
    "lublin",
    "bialystok",
    "katowice",
    "gdynia",
    "czestochowa",
    "radom",
    "torun",
    "sosnowiec",
    "rzeszow",
    "kielce",
    "gliwice",
    "olsztyn",
    "zabrze",
    "bielsko-biala",
    "bytom",
    "zielona-gora",
    "rybnik",
    "ruda-slaska",
    "opole",
    "tychy",
    "gorzow-wielkopolski",
    "elblag",
    "plock",
    "dabrowa-gornicza",
    "walbrzych",
    "wloclawek",
    "tarnow",
    "chorzow",
    "koszalin",
    "kalisz",
    "legnica",
    "grudziadz",
]

# Stream ids of the SeedSequence sub-streams (fixed so adding a stream never changes existing ones).
_S_LISTINGS, _S_USERS, _S_DRIFT, _S_IDS, _S_DAY0 = 0, 1, 2, 3, 1000


@dataclass
class SyntheticData:
    """The three generated frames plus run metadata (metadata is not part of ``content_hash``)."""

    listings: pd.DataFrame
    events: pd.DataFrame
    ground_truth: pd.DataFrame
    #: scale, seed, start/end, drift settings and, for category_shift, the shifted user ids
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Headline numbers for READMEs and demos: sizes, funnel rates, skew and mix."""
        ev, gt, li = self.events, self.ground_truth, self.listings
        counts = ev["event_type"].value_counts()
        n = {t: float(counts.get(t, 0)) for t in EVENT_TYPES}
        imps, views = n["impression"], n["listing_viewed"]
        city_share = li["city"].value_counts(normalize=True)
        event_city = ev["listing_id"].map(li.set_index("listing_id")["city"]).value_counts(normalize=True)
        ts = ev["occurred_at"]
        weekend = ts.dt.dayofweek >= 5
        n_days = max(1, ts.dt.normalize().nunique())
        weekend_days = max(1, ts[weekend].dt.normalize().nunique())
        weekday_days = max(1, n_days - weekend_days)
        out: dict[str, float] = {
            "days": float(n_days),
            "listings": float(len(li)),
            "active_users": float(ev["user_id"].nunique()),
            "events": float(len(ev)),
            "impressions": imps,
            "views": views,
            "favorites": n["listing_favorited"],
            "contacts": n["listing_contact_clicked"],
            "view_rate": views / imps if imps else float("nan"),
            "favorite_per_view": n["listing_favorited"] / views if views else float("nan"),
            "contact_per_view": n["listing_contact_clicked"] / views if views else float("nan"),
            "ground_truth_rows": float(len(gt)),
            "positive_rate": float(gt["label"].mean()) if len(gt) else float("nan"),
            "mean_true_p": float(gt["true_p"].mean()) if len(gt) else float("nan"),
            "top_city_listing_share": float(city_share.iloc[0]) if len(city_share) else float("nan"),
            "median_city_listing_share": float(city_share.median()) if len(city_share) else float("nan"),
            "top_city_event_share": float(event_city.iloc[0]) if len(event_city) else float("nan"),
            "weekend_weekday_daily_ratio": float(
                weekend.sum() / weekend_days / ((~weekend).sum() / weekday_days)
            )
            if (~weekend).any()
            else float("nan"),
            "price_null_share": float(li["price"].isna().mean()),
        }
        device = ev["device_type"].value_counts(normalize=True)
        for d in DEVICE_TYPES:
            out[f"device_share_{d}"] = float(device.get(d, 0.0))
        return out


# --- helpers ---------------------------------------------------------------------------------------------


def _rng(seed: int, stream: int) -> np.random.Generator:
    """Independent generator per purpose/day: changing one stream's usage never shifts another."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=(stream,))))


def _zipf_p(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_M62 = np.uint64((1 << 62) - 1)


class _UuidFactory:
    """Version-4 (and, for events, version-7) UUIDs, deterministic from the seed and unique by construction.

    The high 64 bits are random; the low 62 bits are a seeded bijection of a global counter, so no two
    ids produced by one factory can collide (no need to check for or regenerate duplicates).
    """

    def __init__(self, seed: int) -> None:
        rng = _rng(seed, _S_IDS)
        self._salt, self._mul1, self._mul2 = (np.uint64(x) for x in rng.bit_generator.random_raw(3))
        self._mul1 |= np.uint64(1)  # odd multipliers are bijective modulo 2**62
        self._mul2 |= np.uint64(1)
        self._seed = seed
        self._counter = 0

    def take(self, n: int, stream: int) -> np.ndarray:
        """``n`` ids as an object array of str; ``stream`` picks the random high words (prefix-stable)."""
        hi = _rng(self._seed, stream).bit_generator.random_raw(n).astype(np.uint64)
        hi = (hi & ~np.uint64(0xF000)) | np.uint64(0x4000)  # version 4
        return _format_uuids(hi, self._unique_low_words(n))

    def take_time_ordered(self, times_us: np.ndarray, stream: int) -> np.ndarray:
        """Version-7 UUIDs (RFC 9562) for events at ``times_us``: Unix milliseconds in the top 48 bits.

        Modern trackers mint event ids this way so that ids sort by time: a day's events land at the
        right edge of the primary-key B-tree instead of all over it (ingestion speed, semantics §3).
        Uniqueness comes from the same counter bijection as :meth:`take`, in the low bits.
        """
        n = len(times_us)
        ms = (np.asarray(times_us, dtype=np.int64) // 1000).astype(np.uint64) & np.uint64((1 << 48) - 1)
        rand = _rng(self._seed, stream).bit_generator.random_raw(n).astype(np.uint64) & np.uint64(0x0FFF)
        hi = (ms << np.uint64(16)) | np.uint64(0x7000) | rand  # version 7
        return _format_uuids(hi, self._unique_low_words(n))

    def _unique_low_words(self, n: int) -> np.ndarray:
        """The next ``n`` low words: a seeded bijection of the counter, with the RFC variant bits."""
        x = (np.arange(self._counter, self._counter + n, dtype=np.uint64) + self._salt) & _M62
        self._counter += n
        with np.errstate(over="ignore"):
            x = (x * self._mul1) & _M62
            x ^= x >> np.uint64(29)
            x = (x * self._mul2) & _M62
            x ^= x >> np.uint64(32)
        return x | np.uint64(1 << 63)  # RFC 4122 variant (top bits 10)


#: two lower-case hex digits per byte value, as little-endian uint16 (first digit in the low byte)
_HEX_PAIRS = np.array(
    [ord(a) | (ord(b) << 8) for a in "0123456789abcdef" for b in "0123456789abcdef"], dtype="<u2"
)
_UUID_CHUNK = 1 << 20  # format in chunks: bounded temporaries, cache-friendly


def _format_uuids(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Vectorised canonical lower-case UUID text (8-4-4-4-12) as an object array of str."""
    out = np.empty(len(hi), dtype=object)
    for a in range(0, len(hi), _UUID_CHUNK):
        h, low = hi[a : a + _UUID_CHUNK], lo[a : a + _UUID_CHUNK]
        n = len(h)
        raw = np.empty((n, 16), dtype=np.uint8)
        raw[:, :8] = h.astype(">u8").view(np.uint8).reshape(n, 8)
        raw[:, 8:] = low.astype(">u8").view(np.uint8).reshape(n, 8)
        hx = _HEX_PAIRS[raw].view(np.uint8)  # (n, 32) hex digits
        text = np.full((n, 36), ord("-"), dtype=np.uint8)
        for dst, src, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
            text[:, dst : dst + width] = hx[:, src : src + width]
        offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int64)
        arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.reshape(-1)))
        out[a : a + n] = arr.to_numpy(zero_copy_only=False)
    return out


def _to_utc(us: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(us.astype("datetime64[us]")).tz_localize("UTC")


def _day_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * _US_PER_DAY


def _hour_of_day_us(rng: np.random.Generator, n: int) -> np.ndarray:
    """Offsets within a day (us) following the daily profile."""
    hour = rng.choice(24, size=n, p=_HOUR_P)
    return hour.astype(np.int64) * 3600 * _US_PER_SECOND + rng.integers(0, 3600 * _US_PER_SECOND, size=n)


def _delay_us(rng: np.random.Generator, n: int, spec: tuple[float, float]) -> np.ndarray:
    s = spec[0] + np.minimum(rng.exponential(spec[1], size=n), _MAX_DELAY_S)
    return (s * _US_PER_SECOND).astype(np.int64)


# --- world: listings and users ---------------------------------------------------------------------------


@dataclass
class _World:
    """Latent state shared by all days (indices, not ids; ids are attached at the end)."""

    n_cat: int
    n_city: int
    city_p: np.ndarray
    cat_p: np.ndarray
    # listings
    l_cat: np.ndarray
    l_city: np.ndarray
    l_pct: np.ndarray  # price percentile within category (NaN when price is null)
    l_premium: np.ndarray
    l_img: np.ndarray
    # users
    u_lam: np.ndarray
    u_home: np.ndarray
    u_device: np.ndarray
    u_price_pct: np.ndarray
    u_pref: np.ndarray  # (U, K) category ids
    u_cumw: np.ndarray  # (U, K) cumulative weights
    u_w: np.ndarray  # (U, K) weights
    u_pref_drift: np.ndarray  # preferences from drift_from on (== u_pref unless category_shift)
    # availability lookups: listings sorted by (key, created_at)
    by_cell: tuple[np.ndarray, np.ndarray, np.ndarray]
    by_cat: tuple[np.ndarray, np.ndarray, np.ndarray]
    by_all: tuple[np.ndarray, np.ndarray, np.ndarray]


_KEY_SHIFT = 46  # created_at offsets (us since origin) stay below 2**46 (~814 days) ...
_MAX_DAYS = 600  # ... given at most this many generated days after the pre-listing window


def _lookup(
    group: np.ndarray, created_rel: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted keys, listing index per sorted position, first position per group)."""
    keys = (group.astype(np.int64) << _KEY_SHIFT) + created_rel
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.searchsorted(keys, np.arange(n_groups, dtype=np.int64) << _KEY_SHIFT)
    return keys, order, starts


def _make_listings(spec: ScaleSpec, seed: int, start_us: int, end_us: int) -> dict[str, np.ndarray]:
    rng = _rng(seed, _S_LISTINGS)
    n, n_cat = spec.listings, spec.categories
    cat_mu = rng.uniform(np.log(15.0), np.log(4000.0), size=n_cat)
    cat_sigma = rng.uniform(0.45, 0.95, size=n_cat)
    cat = rng.choice(n_cat, size=n, p=_zipf_p(n_cat, _CATEGORY_ZIPF))
    city = rng.choice(spec.cities, size=n, p=_zipf_p(spec.cities, _CITY_ZIPF))
    premium = rng.random(n) < _PREMIUM
    z = rng.standard_normal(n) + 0.3 * premium
    base_price = np.round(np.exp(cat_mu[cat] + cat_sigma[cat] * z), 2)
    price_null = rng.random(n) < _PRICE_NULL
    img = np.where(
        premium,
        1 + rng.poisson(8.0, size=n),
        np.where(rng.random(n) < 0.06, 0, 1 + rng.poisson(4.5, size=n)),
    )
    img = np.minimum(img, 30).astype(np.int64)
    pre = rng.random(n) < spec.prelisted_fraction
    pre_us = start_us - rng.integers(1, _PRELIST_DAYS * _US_PER_DAY, size=n)
    period_days = (end_us - start_us) // _US_PER_DAY
    new_us = start_us + rng.integers(0, period_days, size=n) * _US_PER_DAY + _hour_of_day_us(rng, n)
    created = np.where(pre, pre_us, new_us).astype(np.int64)
    price = np.where(price_null, np.nan, base_price)
    # percent_rank within category, the same definition the downstream price features use
    pct = (
        pd.Series(price)
        .groupby(cat)
        .rank(method="min")
        .sub(1.0)
        .div(pd.Series(price).groupby(cat).transform("count").sub(1.0).clip(lower=1.0))
        .to_numpy()
    )
    return {
        "cat": cat,
        "city": city,
        "premium": premium,
        "img": img,
        "created": created,
        "price": price,
        "pct": pct,
    }


def _make_users(spec: ScaleSpec, seed: int, cat_p: np.ndarray, city_p: np.ndarray) -> dict[str, np.ndarray]:
    rng = _rng(seed, _S_USERS)
    n, k = spec.users, _TOP_CATEGORIES
    activity = rng.lognormal(0.0, _ACTIVITY_SIGMA, size=n) / np.exp(_ACTIVITY_SIGMA**2 / 2)
    lam = np.minimum(spec.sessions_per_user_day * activity, _MAX_SESSIONS_PER_DAY)
    home = rng.choice(spec.cities, size=n, p=city_p)
    device = rng.choice(len(DEVICE_TYPES), size=n, p=_DEVICE_MIX)
    price_pct = rng.beta(2.0, 2.0, size=n)
    # k distinct categories per user, popularity-weighted (Gumbel top-k), in chunks to bound memory
    pref = np.empty((n, k), dtype=np.int64)
    log_p = np.log(cat_p).astype(np.float32)
    for lo in range(0, n, 200_000):
        g = rng.gumbel(size=(min(n, lo + 200_000) - lo, len(cat_p))).astype(np.float32) + log_p
        pref[lo : lo + len(g)] = np.argsort(-g, axis=1, kind="stable")[:, :k]
    w = rng.dirichlet(np.full(k, _PREF_DIRICHLET), size=n)
    return {"lam": lam, "home": home, "device": device, "price_pct": price_pct, "pref": pref, "w": w}


def _shift_preferences(pref: np.ndarray, n_cat: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """category_shift: 20% of users swap their preferred categories for ones they did not prefer."""
    rng = _rng(seed, _S_DRIFT)
    n, k = pref.shape
    shifted = np.sort(rng.choice(n, size=round(_CATEGORY_SHIFT_SHARE * n), replace=False))
    g = rng.gumbel(size=(len(shifted), n_cat))
    g[np.arange(len(shifted))[:, None], pref[shifted]] = -np.inf  # exclude old preferences
    new = pref.copy()
    new[shifted] = np.argsort(-g, axis=1, kind="stable")[:, :k]
    return new, shifted


# --- per-day simulation ----------------------------------------------------------------------------------


def _pick(
    lookup: tuple[np.ndarray, np.ndarray, np.ndarray], group: np.ndarray, t_rel: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Listing index per request among listings of ``group`` created at or before ``t_rel`` (-1 if none).

    Recent listings are favoured (feeds are freshness-ranked): position from the newest = n * u**power.
    """
    keys, order, starts = lookup
    first = starts[group]
    avail = np.searchsorted(keys, (group.astype(np.int64) << _KEY_SHIFT) + t_rel, side="right") - first
    back = np.minimum((avail * u**_RECENCY_POWER).astype(np.int64), np.maximum(avail - 1, 0))
    pos = first + avail - 1 - back
    ok = avail > 0
    return np.where(ok, order[np.clip(pos, 0, len(order) - 1)], -1), ok


def _hour_band(hour: np.ndarray, coef: tuple[float, float]) -> np.ndarray:
    evening = (hour >= _EVENING[0]) & (hour < _EVENING[1])
    night = (hour >= _NIGHT[0]) & (hour < _NIGHT[1])
    return coef[0] * evening + coef[1] * night


def _first_created(lookup: tuple[np.ndarray, np.ndarray, np.ndarray], n_groups: int) -> np.ndarray:
    """created_at (us since origin) of each group's first listing; +inf for a group without listings."""
    keys, _, starts = lookup
    out = np.full(n_groups, np.inf)
    has = starts < len(keys)
    has[has] = (keys[starts[has]] >> _KEY_SHIFT) == np.arange(n_groups)[has]
    out[has] = keys[starts[has]] & ((1 << _KEY_SHIFT) - 1)
    return out


def _feed_share(
    lookup: tuple[np.ndarray, np.ndarray, np.ndarray],
    group: np.ndarray,
    t_rel: np.ndarray,
    listing: np.ndarray,
) -> np.ndarray:
    """P(``_pick`` returns ``listing`` | ``group``, ``t_rel``): the listing ``b`` places from the newest of
    ``n`` available is picked when ``b <= n u**power < b + 1``."""
    keys, order, starts = lookup
    where = np.empty(len(order), dtype=np.int64)
    where[order] = np.arange(len(order))
    n = np.searchsorted(keys, (group.astype(np.int64) << _KEY_SHIFT) + t_rel, side="right") - starts[group]
    back = starts[group] + n - 1 - where[listing]
    ok = (n > 0) & (back >= 0) & (back < n)
    n, back = np.maximum(n, 1), np.clip(back, 0, None)
    root = 1.0 / _RECENCY_POWER
    return np.where(ok, ((back + 1) / n) ** root - (back / n) ** root, 0.0)


#: per UTC hour: its engagement band (0 other, 1 evening, 2 night) and the session-start mass of later hours
_BAND = _hour_band(np.arange(24), (1, 2)).astype(np.int64)
_LATER_MASS = np.stack(
    [np.r_[np.cumsum(np.where(b == _BAND, _HOUR_P, 0.0)[::-1])[::-1][1:], 0.0] for b in range(3)], 1
)


def _example_truth(
    w: _World,
    spec: ScaleSpec,
    pref: np.ndarray,
    day: dt.date,
    day_start: int,
    origin_us: int,
    ios_move: float,
    i: np.ndarray,
    user: np.ndarray,
    listing: np.ndarray,
    t_imp: np.ndarray,
    t_rel: np.ndarray,
    position: np.ndarray,
    device: np.ndarray,
    base: np.ndarray,
    p_pos: np.ndarray,
) -> np.ndarray:
    """P(the pair turns positive today | what is known at its first impression ``i``).

    Known then: the user's latent state, the listing, the first impression's device, hour and place in
    its session. Not known: whether the pair will be shown again today. The probability is the
    generator's own process from that moment on: the first impression is positive with ``p1``; each
    remaining impression of the session (negative-binomial length given the position reached) shows
    the listing with the pick probability ``q`` and is positive with ``p1``; later sessions of the
    day (Poisson, start hours from the daily profile, the user's device mix) do the same with their
    own device and hour band. ``q`` holds the listing's feed position at the example time fixed (a
    listing created later the same day rarely moves it). ``1 - (1 - p1) * E[miss in the session] *
    E[miss in later sessions]``.
    """
    u, li, t_rel = user[i], listing[i], t_rel[i]
    c, x = w.l_cat[li], w.l_city[li]
    # q: P(an impression of this user shows this listing), with _pick's fallbacks for empty cells
    p_cat = (1 - _EXPLORE) * (w.u_w[u] * (pref[u] == c[:, None])).sum(axis=1) + _EXPLORE * w.cat_p[c]
    p_home = (1 - _TRAVEL) * (w.u_home[u] == x) + _TRAVEL * w.city_p[x]
    q = p_cat * p_home * _feed_share(w.by_cell, c * w.n_city + x, t_rel, li)
    cell_first = _first_created(w.by_cell, w.n_cat * w.n_city).reshape(w.n_cat, w.n_city)
    empty_elsewhere = np.zeros(len(u))
    for cc, xx in np.argwhere(cell_first > day_start - origin_us):  # cells still empty at some point today
        rows = (c == cc) & (t_rel < cell_first[cc, xx])
        empty_elsewhere += rows * ((1 - _TRAVEL) * (w.u_home[u] == xx) + _TRAVEL * w.city_p[xx])
    if empty_elsewhere.any():
        q += p_cat * empty_elsewhere * _feed_share(w.by_cat, c, t_rel, li)
    cat_first = _first_created(w.by_cat, w.n_cat)
    late = np.flatnonzero(cat_first > day_start - origin_us)
    if len(late):
        p_empty_cat = np.zeros(len(u))
        for cc in late:
            share = (1 - _EXPLORE) * (w.u_w[u] * (pref[u] == cc)).sum(axis=1) + _EXPLORE * w.cat_p[cc]
            p_empty_cat += (t_rel < cat_first[cc]) * share
        q += p_empty_cat * _feed_share(w.by_all, np.zeros(len(u), dtype=np.int64), t_rel, li)
    q = np.clip(q, 0.0, 1.0)

    # impressions per session K = 1 + X, X ~ NB(2, r) (the _MAX_IMPRESSIONS cap moves ~1e-6 of the mass)
    r = 2.0 / (2.0 + spec.impressions_per_session - 1.0)
    hour_coef = np.array([0.0, *_POS_HOUR])
    band = _BAND[(t_imp[i] - day_start) // (3600 * _US_PER_SECOND)]
    p1 = p_pos[i]
    # the rest of this session: E[z**(X - j) | X >= j] at the 0-based position j
    a, b, j = (1 - r) * (1 - q * p1), 1 - r, position[i]
    miss_session = (a / (1 - a) ** 2 + (j + 1) / (1 - a)) / (b / (1 - b) ** 2 + (j + 1) / (1 - b))
    # later sessions: Poisson by band (the rest of the current hour counts with its remaining share)
    hour = (t_imp[i] - day_start) // (3600 * _US_PER_SECOND)
    left = 1.0 - ((t_imp[i] - day_start) % (3600 * _US_PER_SECOND)) / (3600 * _US_PER_SECOND)
    mass = _LATER_MASS[hour] + (np.arange(3) == band[:, None]) * (_HOUR_P[hour] * left)[:, None]
    mu = (w.u_lam[u] * _WEEKDAY_FACTOR[day.weekday()])[:, None] * mass  # (n, band)
    dev_p = np.tile((1 - _DEVICE_LOYALTY) * _DEVICE_MIX, (len(u), 1))
    dev_p[np.arange(len(u)), w.u_device[u]] += _DEVICE_LOYALTY
    dev_p[:, 0] += ios_move * dev_p[:, 1]
    dev_p[:, 1] *= 1 - ios_move
    hit = np.zeros(len(u))
    for d in range(len(DEVICE_TYPES)):
        for bb in range(3):
            z = 1 - q * _sigmoid(base[i] + _POS_DEVICE[d] + hour_coef[bb])
            no_positive = z * (r / (1 - (1 - r) * z)) ** 2  # E[z**K]
            hit += mu[:, bb] * dev_p[:, d] * (1 - no_positive)
    return 1 - (1 - p1) * miss_session * np.exp(-hit)


def _simulate_day(
    w: _World,
    spec: ScaleSpec,
    seed: int,
    day_index: int,
    day: dt.date,
    origin_us: int,
    drifted: bool,
    drift: str | None,
) -> dict[str, np.ndarray]:
    """One UTC day of sessions → impressions → funnel events, plus the day's ground truth.

    Every random draw happens in the same order and size whether or not drift is active, so a
    drifted run and an undrifted run stay aligned draw for draw.
    """
    rng = _rng(seed, _S_DAY0 + day_index)
    day_start = _day_us(day)
    day_end = day_start + _US_PER_DAY

    # sessions
    n_sess_u = rng.poisson(w.u_lam * _WEEKDAY_FACTOR[day.weekday()])
    s_user = np.repeat(np.arange(len(n_sess_u), dtype=np.int64), n_sess_u)
    n_s = len(s_user)
    s_start = day_start + _hour_of_day_us(rng, n_s)
    own = rng.random(n_s) < _DEVICE_LOYALTY
    s_device = np.where(own, w.u_device[s_user], rng.choice(len(DEVICE_TYPES), size=n_s, p=_DEVICE_MIX))
    u_shift = rng.random(n_s)
    mean_extra = spec.impressions_per_session - 1.0
    n_imp = 1 + np.minimum(rng.negative_binomial(2, 2.0 / (2.0 + mean_extra), size=n_s), _MAX_IMPRESSIONS - 1)
    ios_move = 0.0  # share of android sessions moved to ios (device_shift)
    if drifted and drift == "device_shift":
        # move 20 points of the day's traffic (impression-weighted) from android to ios, whatever the
        # realised mix: with heavy-tailed users the android share of a small population varies a lot
        android = s_device == 1
        share = n_imp[android].sum() / max(1, n_imp.sum())
        ios_move = min(1.0, _DEVICE_SHIFT_POINTS / max(share, 1e-9))
        s_device = np.where(android & (u_shift < ios_move), 0, s_device)

    # impression timing (outcome-independent, so sessions can be kept inside the day before listings are chosen)
    n_i = int(n_imp.sum())
    sess = np.repeat(np.arange(n_s), n_imp)
    first = np.cumsum(n_imp) - n_imp
    gaps = _delay_us(rng, n_i, _IMP_GAP_S)
    gaps[first] = 0
    csum = np.cumsum(gaps)
    offset = csum - csum[first][sess]
    view_d = _delay_us(rng, n_i, _VIEW_DELAY_S)
    fav_d = _delay_us(rng, n_i, _FAV_DELAY_S)
    contact_d = _delay_us(rng, n_i, _CONTACT_DELAY_S)
    reach = offset + view_d + np.maximum(fav_d, contact_d)
    span = np.maximum.reduceat(reach, first) if n_s else np.zeros(0, dtype=np.int64)
    s_start = np.clip(s_start, day_start, day_end - 1 - span)  # a session never crosses midnight
    user = s_user[sess]
    t_imp = s_start[sess] + offset

    # which listing: preferred categories / home city, with exploration and travel
    pref = w.u_pref_drift if drifted else w.u_pref
    explore = rng.random(n_i) < _EXPLORE
    u_k = rng.random(n_i)
    k = (u_k[:, None] > w.u_cumw[user, :-1]).sum(axis=1)
    cat = np.where(explore, rng.choice(w.n_cat, size=n_i, p=w.cat_p), pref[user, k])
    travel = rng.random(n_i) < _TRAVEL
    city = np.where(travel, rng.choice(w.n_city, size=n_i, p=w.city_p), w.u_home[user])
    u_pick = rng.random(n_i)
    t_rel = s_start[sess] - origin_us  # available at session start → every event is after created_at
    listing, ok = _pick(w.by_cell, cat * w.n_city + city, t_rel, u_pick)
    if not ok.all():  # empty (category, city) cell: any city of the category, then anything
        alt, _ = _pick(w.by_cat, cat, t_rel, u_pick)
        listing = np.where(ok, listing, alt)
        missing = listing < 0
        if missing.any():
            alt, _ = _pick(w.by_all, np.zeros(n_i, dtype=np.int64), t_rel, u_pick)
            listing = np.where(missing, alt, listing)

    # features and outcomes
    l_cat = w.l_cat[listing]
    cat_aff = (w.u_w[user] * (pref[user] == l_cat[:, None])).sum(axis=1)
    city_match = (w.l_city[listing] == w.u_home[user]).astype(np.float64)
    pct = w.l_pct[listing]
    gap = np.where(np.isnan(pct), _NULL_PRICE_GAP, np.abs(pct - w.u_price_pct[user]))
    premium = w.l_premium[listing].astype(np.float64)
    img = np.log1p(w.l_img[listing])
    device = s_device[sess]
    hour = (t_imp - day_start) // (3600 * _US_PER_SECOND)

    def score(c: dict[str, float], dev: np.ndarray, hour_coef: tuple[float, float]) -> np.ndarray:
        return (
            c["bias"]
            + c["cat"] * cat_aff
            + c["city"] * city_match
            + c["gap"] * gap
            + c["premium"] * premium
            + c["img"] * img
            + dev[device]
            + _hour_band(hour, hour_coef)
        )

    p_pos = _sigmoid(score(_POS, _POS_DEVICE, _POS_HOUR))
    p_view = _sigmoid(score(_VIEW, _VIEW_DEVICE, _VIEW_HOUR))
    pos = rng.random(n_i) < p_pos
    viewed = pos | (rng.random(n_i) < p_view)
    kind = rng.random(n_i)
    fav = pos & ((kind < _P_FAV_ONLY) | (kind >= _P_FAV_ONLY + _P_CONTACT_ONLY))
    contact = pos & (kind >= _P_FAV_ONLY)

    # events, sorted by time (stable: impression < view < favourite/contact on exact ties)
    t_view = t_imp + view_d
    parts = [np.ones(n_i, dtype=bool), viewed, fav, contact]
    times = [t_imp, t_view, t_view + fav_d, t_view + contact_d]
    e_time = np.concatenate([t[m] for t, m in zip(times, parts, strict=True)])
    e_type = np.concatenate([np.full(int(m.sum()), i, dtype=np.int8) for i, m in enumerate(parts)])
    e_user = np.concatenate([user[m] for m in parts])
    e_listing = np.concatenate([listing[m] for m in parts])
    e_device = np.concatenate([device[m] for m in parts]).astype(np.int8)
    order = np.argsort(e_time, kind="stable")

    # ground truth per (user, listing) of the day: label = any positive impression; true_p = the
    # probability of that given what is known at the pair's first impression (the example time), not
    # 1 - prod(1 - p_i) over the impressions the day turned out to have (later ones are not knowable then)
    pair = user * len(w.l_cat) + listing
    uniq, inv = np.unique(pair, return_inverse=True)
    by_pair = np.lexsort((t_imp, inv))
    first_imp = by_pair[np.flatnonzero(np.diff(inv[by_pair], prepend=-1) != 0)]
    true_p = _example_truth(
        w,
        spec,
        pref,
        day,
        day_start,
        origin_us,
        ios_move,
        first_imp,
        user,
        listing,
        t_imp,
        np.broadcast_to(t_rel, (n_i,)),
        np.arange(n_i) - first[sess],
        device,
        score(_POS, np.zeros(len(DEVICE_TYPES)), (0.0, 0.0)),
        p_pos,
    )
    label = np.bincount(inv, weights=pos, minlength=len(uniq)) > 0
    return {
        "e_time": e_time[order],
        "e_type": e_type[order],
        "e_user": e_user[order].astype(np.int32),
        "e_listing": e_listing[order].astype(np.int32),
        "e_device": e_device[order],
        "g_user": (uniq // len(w.l_cat)).astype(np.int32),
        "g_listing": (uniq % len(w.l_cat)).astype(np.int32),
        "g_day": np.full(len(uniq), day_start, dtype=np.int64),
        "g_p": true_p,
        "g_label": label.astype(np.int8),
    }


# --- public API ------------------------------------------------------------------------------------------


def generate(
    scale: str = "xs",
    *,
    days: int | None = None,
    seed: int = 42,
    end: dt.date | None = None,
    drift_from: dt.date | None = None,
    drift: str | None = None,
    progress: bool = False,
) -> SyntheticData:
    """Generate a synthetic marketplace covering the ``days`` UTC days of ``[end - days, end)``.

    ``end`` is exclusive (default: today, UTC). ``drift`` (one of DRIFT_KINDS) applies from the UTC day
    ``drift_from`` (inclusive), which must lie inside the period. Same arguments → bit-identical output.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    spec = SCALES[scale]
    days = spec.default_days if days is None else days
    if not isinstance(days, int | np.integer) or not 1 <= days <= _MAX_DAYS:
        raise ValueError(f"days must be an integer in [1, {_MAX_DAYS}], got {days!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in (("end", end), ("drift_from", drift_from)):
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date | None):
            raise ValueError(f"{name} must be a datetime.date (a UTC day), got {value!r}")
    end = dt.datetime.now(dt.UTC).date() if end is None else end
    start = end - dt.timedelta(days=days)
    if drift is not None and drift not in DRIFT_KINDS:
        raise ValueError(f"unknown drift kind {drift!r}; expected one of {', '.join(DRIFT_KINDS)}")
    if (drift is None) != (drift_from is None):
        raise ValueError("drift and drift_from must be given together")
    if drift_from is not None and not start <= drift_from < end:
        raise ValueError(f"drift_from {drift_from} is outside the generated period [{start}, {end})")
    seed = int(seed)

    start_us, end_us = _day_us(start), _day_us(end)
    origin_us = start_us - _PRELIST_DAYS * _US_PER_DAY
    city_p = _zipf_p(spec.cities, _CITY_ZIPF)
    cat_p = _zipf_p(spec.categories, _CATEGORY_ZIPF)
    li = _make_listings(spec, seed, start_us, end_us)
    us = _make_users(spec, seed, cat_p, city_p)
    pref_drift, shifted = us["pref"], np.zeros(0, dtype=np.int64)
    if drift == "category_shift":
        pref_drift, shifted = _shift_preferences(us["pref"], spec.categories, seed)

    created_rel = li["created"] - origin_us
    world = _World(
        n_cat=spec.categories,
        n_city=spec.cities,
        city_p=city_p,
        cat_p=cat_p,
        l_cat=li["cat"],
        l_city=li["city"],
        l_pct=li["pct"],
        l_premium=li["premium"],
        l_img=li["img"],
        u_lam=us["lam"],
        u_home=us["home"],
        u_device=us["device"],
        u_price_pct=us["price_pct"],
        u_pref=us["pref"],
        u_cumw=np.cumsum(us["w"], axis=1),
        u_w=us["w"],
        u_pref_drift=pref_drift,
        by_cell=_lookup(li["cat"] * spec.cities + li["city"], created_rel, spec.categories * spec.cities),
        by_cat=_lookup(li["cat"], created_rel, spec.categories),
        by_all=_lookup(np.zeros(spec.listings, dtype=np.int64), created_rel, 1),
    )

    chunks: list[dict[str, np.ndarray]] = []
    # one step per day plus a last one for ids and frames (several seconds at scale s)
    bar = tqdm(total=days + 1, desc=f"synthetic {scale}", unit="step", disable=not progress)
    for i in range(days):
        day = start + dt.timedelta(days=i)
        drifted = drift_from is not None and day >= drift_from
        chunks.append(_simulate_day(world, spec, seed, i, day, origin_us, drifted, drift))
        bar.update(1)
    bar.set_postfix_str("ids and frames")
    cat_arrays = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    del chunks

    # ids: users, listings, then events (one counter → all ids of a dataset are distinct)
    ids = _UuidFactory(seed)
    user_ids = ids.take(spec.users, _S_IDS + 10)
    listing_ids = ids.take(spec.listings, _S_IDS + 11)
    event_ids = ids.take_time_ordered(cat_arrays["e_time"], _S_IDS + 12)

    price = li["price"]
    if drift == "price_inflation":
        # listings created from drift_from on cost 15% more; engagement is on the within-category
        # percentile of the uninflated price, so engaged prices inflate along with listed ones
        inflated = li["created"] >= _day_us(drift_from)
        price = np.where(inflated, np.round(price * _PRICE_INFLATION, 2), price)

    city_names = np.array(
        [_CITY_NAMES[c] if c < len(_CITY_NAMES) else f"city_{c:02d}" for c in range(spec.cities)],
        dtype=object,
    )
    cat_names = np.array([f"cat_{c:02d}" for c in range(spec.categories)], dtype=object)
    listings = pd.DataFrame(
        {
            "listing_id": listing_ids,
            "category_id": cat_names[li["cat"]],
            "city": city_names[li["city"]],
            "price": price.astype(np.float64),
            "is_premium": li["premium"].astype(bool),
            "image_count": li["img"].astype(np.int64),
            "created_at": _to_utc(li["created"]),
        },
        copy=False,  # fresh arrays: skip pandas' block consolidation (a full extra copy at scale s/m)
    )
    events = pd.DataFrame(
        {
            "event_id": event_ids,
            "user_id": user_ids[cat_arrays["e_user"]],
            "listing_id": listing_ids[cat_arrays["e_listing"]],
            "event_type": np.array(EVENT_TYPES, dtype=object)[cat_arrays["e_type"]],
            "occurred_at": _to_utc(cat_arrays["e_time"]),
            "device_type": np.array(DEVICE_TYPES, dtype=object)[cat_arrays["e_device"]],
        },
        copy=False,
    )
    ground_truth = pd.DataFrame(
        {
            "user_id": user_ids[cat_arrays["g_user"]],
            "listing_id": listing_ids[cat_arrays["g_listing"]],
            "day": cat_arrays["g_day"].astype("datetime64[us]"),
            "true_p": cat_arrays["g_p"].astype(np.float64),
            "label": cat_arrays["g_label"].astype(np.int8),
        },
        copy=False,
    )
    meta: dict[str, Any] = {
        "scale": scale,
        "seed": seed,
        "start": start,
        "end": end,
        "days": days,
        "drift": drift,
        "drift_from": drift_from,
        "shifted_user_ids": [str(x) for x in user_ids[shifted]],
    }
    bar.update(1)
    bar.close()
    return SyntheticData(listings=listings, events=events, ground_truth=ground_truth, meta=meta)


def write_parquet(data: SyntheticData, out_dir: Path, *, clean: bool = False) -> dict[str, list[Path]]:
    """Write the landing layout: one listings file, one interactions file per UTC day, one ground-truth file.

    Interactions go to ``interactions/interactions_YYYY-MM-DD.parquet`` (the day of ``occurred_at``,
    rows sorted by time). Files of the same name are overwritten; with ``clean=True`` other
    ``interactions_*.parquet`` files already in that folder (e.g. from a longer earlier run) are removed
    first, so the folder holds exactly this dataset.
    """
    out_dir = Path(out_dir)
    paths: dict[str, list[Path]] = {"listings": [], "interactions": [], "ground_truth": []}
    for sub in paths:
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    if clean:
        for old in (out_dir / "interactions").glob("interactions_*.parquet"):
            old.unlink()

    listings_path = out_dir / "listings" / "listings.parquet"
    pq.write_table(pa.Table.from_pandas(data.listings, preserve_index=False), listings_path)
    paths["listings"].append(listings_path)

    events = data.events
    us = events["occurred_at"].dt.as_unit("us").array.asi8
    if len(us) and np.any(np.diff(us) < 0):
        raise ValueError("events must be sorted by occurred_at")
    table = pa.Table.from_pandas(events, preserve_index=False)
    day_no = us // _US_PER_DAY
    bounds = np.flatnonzero(np.diff(day_no)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(us)], strict=True):
        if hi <= lo:
            continue
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(day_no[lo]))
        path = out_dir / "interactions" / f"interactions_{day.isoformat()}.parquet"
        pq.write_table(table.slice(int(lo), int(hi - lo)), path)
        paths["interactions"].append(path)

    gt_path = out_dir / "ground_truth" / "ground_truth.parquet"
    pq.write_table(pa.Table.from_pandas(data.ground_truth, preserve_index=False), gt_path)
    paths["ground_truth"].append(gt_path)
    return paths


def _hash_column(h: Any, name: str, s: pd.Series) -> None:
    h.update(f"\x1e{name}\x1f{s.dtype}\x1f{len(s)}\x1f".encode())
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        arr = pa.array(s.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
        validity, offsets, values = arr.buffers()
        h.update(b"\x00" if validity is None else np.asarray(arr.is_null()).tobytes())
        h.update(offsets)
        if values is not None:
            h.update(values)
    elif isinstance(s.dtype, pd.DatetimeTZDtype) or np.issubdtype(s.dtype, np.datetime64):
        h.update(np.ascontiguousarray(s.array.asi8).astype("<i8").tobytes())
    else:
        v = s.to_numpy()
        if v.dtype.kind == "f":
            nan = np.isnan(v)
            h.update(nan.tobytes())
            v = np.where(nan, 0.0, v)
        h.update(np.ascontiguousarray(v.astype(v.dtype.newbyteorder("<"))).tobytes())


def content_hash(data: SyntheticData) -> str:
    """sha256 over a canonical serialisation of listings, events and ground truth (column order, dtypes,
    string bytes, null masks, little-endian numbers, timestamps as int64 us) -- stable across runs and
    machines, unlike pickle or Parquet bytes."""
    h = hashlib.sha256()
    for name in ("listings", "events", "ground_truth"):
        frame: pd.DataFrame = getattr(data, name)
        h.update(f"\x1d{name}\x1f{len(frame)}".encode())
        for col in frame.columns:
            _hash_column(h, str(col), frame[col])
    return h.hexdigest()
