"""The rule-based strategy the default policy is behaviour-cloned from.

Trend following with a mean-reversion brake and a volatility filter, read from
the observation window (feature names as in ``costeff.policy.market``):

1. **Volatility filter.** When the realised volatility estimate at the last step
   (``vol_ewm``) is above ``VOL_MAX``, stay flat: no position in a turbulent market.
2. **Signal.** ``trend`` averages three views of direction, each scaled to be about
   one in a clean trend: the mean return over the window (÷ 0.35, the trend drift),
   the slow return average at the last step (÷ 0.35) and the mean order-book
   imbalance (÷ 0.7, its level in a trend). The brake subtracts
   ``REVERSION_WEIGHT × price_z`` at the last step: a price far above its recent
   mean is less attractive to buy.
3. **Decision.** ``score > ENTRY`` → long, ``score < -ENTRY`` → short, else flat.

Every rule is a threshold on a linear summary of the window, so a network can
clone it closely, and on most rows the summaries sit well away from the
thresholds, so the cloned decisions are clear-cut rather than coin flips.
``decide`` reports that distance as a margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from costeff.errors import InputError
from costeff.policy.market import FEATURES

SHORT, FLAT, LONG = 0, 1, 2
VOL_MAX = 1.5
ENTRY = 0.35
REVERSION_WEIGHT = 0.25
TREND_DRIFT = 0.35
TREND_IMBALANCE = 0.7
_COL = {name: i for i, name in enumerate(FEATURES)}
REQUIRED = ("ret", "ret_ewm_slow", "vol_ewm", "price_z", "imbalance")


@dataclass(frozen=True)
class Decision:
    actions: np.ndarray  # int64 [n]: 0 short, 1 flat, 2 long
    score: np.ndarray  # float [n]: trend minus reversion brake
    margin: np.ndarray  # float [n]: distance to the nearest deciding threshold, relative to it


def decide(obs: np.ndarray) -> Decision:
    """The strategy's action for every observation window ``[n, window, features]``."""
    _check(obs)
    vol = obs[:, -1, _COL["vol_ewm"]].astype(np.float64)
    score = signal(obs)
    actions = np.where(score > ENTRY, LONG, np.where(score < -ENTRY, SHORT, FLAT))
    actions = np.where(vol > VOL_MAX, FLAT, actions)
    vol_margin = np.abs(vol - VOL_MAX) / VOL_MAX
    score_margin = np.minimum(np.abs(score - ENTRY), np.abs(score + ENTRY)) / ENTRY
    # Above the filter the score does not matter; below it both thresholds can flip the action.
    margin = np.where(vol > VOL_MAX, vol_margin, np.minimum(vol_margin, score_margin))
    return Decision(actions.astype(np.int64), score, margin)


def signal(obs: np.ndarray) -> np.ndarray:
    ret = obs[:, :, _COL["ret"]].mean(axis=1) / TREND_DRIFT
    slow = obs[:, -1, _COL["ret_ewm_slow"]] / TREND_DRIFT
    imbalance = obs[:, :, _COL["imbalance"]].mean(axis=1) / TREND_IMBALANCE
    trend = (ret + slow + imbalance) / 3.0
    return (trend - REVERSION_WEIGHT * obs[:, -1, _COL["price_z"]]).astype(np.float64)


def _check(obs: np.ndarray) -> None:
    needed = max(_COL[name] for name in REQUIRED) + 1
    if obs.ndim != 3 or obs.shape[2] < needed:
        raise InputError(f"observations: shape {list(obs.shape)} cannot drive the strategy; expected "
                         f"[n, window, >= {needed}] with features {', '.join(FEATURES[:needed])}")
