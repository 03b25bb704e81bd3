"""Seeded synthetic market observations: a window of per-step market features per row.

Each row is an independent simulated instrument path of ``window`` steps (after a
warm-up so the moving averages have settled). The path switches between three
regimes with a Markov chain, and returns have heavy (Student-t, 4 degrees of
freedom) tails, so calibration and evaluation rows contain the outliers and
regime shifts a real feed has.

Regimes (persistence 0.95 per step; the stationary mix is roughly 45/35/20 %):

====== ============ ========================== =====================================
regime  volatility   drift                      character
====== ============ ========================== =====================================
calm    0.6          0                          small noisy returns, tight spreads
trend   0.9          +-0.35 per step (per path)  persistent direction, one-sided book
volat.  2.2          0                          large returns, wide spreads, volume
====== ============ ========================== =====================================

Features, in column order (``FEATURES``). All are scaled to be of order one; a
preset with ``features=k`` uses the first ``k`` columns.

== ================ =============================================================
 0 ``ret``          one-step log return, in units of a typical calm-to-trend sigma
 1 ``ret_ewm_fast`` exponential moving average of ``ret`` (alpha 0.3)
 2 ``ret_ewm_slow`` exponential moving average of ``ret`` (alpha 0.08)
 3 ``vol_ewm``      realised volatility estimate: EWMA of ``|ret|`` (alpha 0.15)
 4 ``price_z``      log price minus its EWMA (alpha 0.1), divided by 4: stretch
                    from the recent mean, the mean-reversion signal
 5 ``log_volume``   traded volume anomaly (log): rises with ``|ret|`` and turbulence
 6 ``spread``       bid-ask spread anomaly (log): widens with volatility
 7 ``imbalance``    order-book imbalance in [-1, 1]: leans with the trend's direction
 8 ``trade_count``  number-of-trades anomaly (log), correlated with volume
 9 ``bid_depth``    depth on the bid side (log anomaly)
10 ``ask_depth``    depth on the ask side (log anomaly)
11 ``basis``        futures basis / funding rate: slow AR(1) process
12 ``index_ret``    market index return, correlated 0.6 with ``ret``
13 ``time_sin``     time of day, sine
14 ``time_cos``     time of day, cosine
15 ``sector_ret``   sector return, correlated 0.3 with ``ret``
== ================ =============================================================
"""

from __future__ import annotations

import numpy as np

from costeff.errors import InputError

FEATURES = ("ret", "ret_ewm_fast", "ret_ewm_slow", "vol_ewm", "price_z", "log_volume", "spread",
            "imbalance", "trade_count", "bid_depth", "ask_depth", "basis", "index_ret", "time_sin",
            "time_cos", "sector_ret")
REGIMES = ("calm", "trend", "volatile")
REGIME_VOL = np.array([0.6, 0.9, 2.2])
TREND_DRIFT = 0.35
STUDENT_DF = 4.0
PERSISTENCE = 0.95
# Off-diagonal mass of a row goes to the other regimes in these proportions (rows: from).
_SWITCH = np.array([[0.0, 0.7, 0.3], [0.7, 0.0, 0.3], [0.6, 0.4, 0.0]])
TRANSITIONS = PERSISTENCE * np.eye(3) + (1 - PERSISTENCE) * _SWITCH
WARMUP = 24
CHUNK_ROWS = 8192  # rows simulated per random stream: bounded memory, same rows on every machine


def observation_shape(preset: str = "default") -> tuple[int, int]:
    from costeff.policy.nets import preset_spec

    spec = preset_spec(preset)
    return (spec.window, spec.features)


def generate_observations(n: int, seed: int = 0, preset: str = "default") -> np.ndarray:
    """``n`` observation windows, float32 ``[n, window, features]`` for ``preset``'s shape."""
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise InputError(f"n: {n!r} must be a positive integer number of rows")
    window, features = observation_shape(preset)
    obs, _ = simulate(int(n), window, seed)
    return np.ascontiguousarray(obs[:, :, :features])


def simulate(n: int, window: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All 16 features ``[n, window, 16]`` and the regime index per step ``[n, window]``.

    Rows are simulated in chunks of ``CHUNK_ROWS`` (chunk ``i`` from the random
    stream ``(seed, i)``), which bounds memory for large ``n``.
    """
    parts = [_simulate_chunk(min(CHUNK_ROWS, n - start), window, (seed, i))
             for i, start in enumerate(range(0, n, CHUNK_ROWS))]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _simulate_chunk(n: int, window: int, seed: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = window + WARMUP
    regimes = _regime_paths(rng, n, steps)
    drift_sign = rng.choice([-1.0, 1.0], size=n)
    ret = _returns(rng, regimes, drift_sign)
    columns = _features(rng, ret, regimes, drift_sign)
    # Stack feature-major (contiguous writes), then one transposing copy: much faster
    # than stacking on the last axis.
    stacked = np.stack([c[:, WARMUP:].astype(np.float32) for c in columns])
    return np.ascontiguousarray(stacked.transpose(1, 2, 0)), regimes[:, WARMUP:]


def _regime_paths(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    stationary = np.linalg.matrix_power(TRANSITIONS, 200)[0]
    regimes = np.empty((n, steps), dtype=np.int64)
    regimes[:, 0] = rng.choice(3, size=n, p=stationary)
    cumulative = TRANSITIONS.cumsum(axis=1)
    for t in range(1, steps):
        u = rng.random(n)[:, None]
        regimes[:, t] = (u > cumulative[regimes[:, t - 1]]).sum(axis=1)
    return regimes


def _returns(rng: np.random.Generator, regimes: np.ndarray, drift_sign: np.ndarray) -> np.ndarray:
    # Student-t scaled to unit variance, so REGIME_VOL is the standard deviation.
    shocks = rng.standard_t(STUDENT_DF, size=regimes.shape) / np.sqrt(STUDENT_DF / (STUDENT_DF - 2))
    drift = np.where(regimes == 1, TREND_DRIFT, 0.0) * drift_sign[:, None]
    return (drift + REGIME_VOL[regimes] * shocks).astype(np.float32)


def _ewm(x: np.ndarray, alpha: float, start: np.ndarray | float = 0.0) -> np.ndarray:
    out = np.empty_like(x)
    acc = np.broadcast_to(np.asarray(start, dtype=x.dtype), x.shape[:1]).copy()
    for t in range(x.shape[1]):
        acc = (1 - alpha) * acc + alpha * x[:, t]
        out[:, t] = acc
    return out


def _features(rng: np.random.Generator, ret: np.ndarray, regimes: np.ndarray,
              drift_sign: np.ndarray) -> list[np.ndarray]:
    n, steps = ret.shape
    noise = lambda scale: scale * rng.standard_normal((n, steps), dtype=np.float32)  # noqa: E731
    abs_ret = np.abs(ret)
    vol = _ewm(abs_ret, 0.15, start=0.7)
    price = ret.cumsum(axis=1)
    price_z = (price - _ewm(price, 0.1)) / 4.0
    turbulence = (regimes == 2).astype(float)
    log_volume = 0.4 * abs_ret + 0.5 * turbulence + noise(0.3) - 0.5
    trending = np.where(regimes == 1, drift_sign[:, None], 0.0)
    depth_tilt = 0.3 * trending
    basis = _ewm(noise(1.0), 0.05) * 3.0
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1)) + np.arange(steps) * (2 * np.pi / 390)
    columns = [
        ret, _ewm(ret, 0.3), _ewm(ret, 0.08), vol, price_z, log_volume,
        0.5 * np.log(REGIME_VOL[regimes] / 0.9) + 0.2 * abs_ret + noise(0.15),
        np.tanh(0.9 * trending + 0.15 * ret + noise(0.3)),
        0.8 * log_volume + noise(0.2),
        depth_tilt - 0.3 * turbulence + noise(0.25),
        -depth_tilt - 0.3 * turbulence + noise(0.25),
        basis, 0.6 * ret + noise(0.8), np.sin(phase), np.cos(phase), 0.3 * ret + noise(0.95),
    ]
    return columns
