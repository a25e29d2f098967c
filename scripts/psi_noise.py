"""How often sampling noise alone passes the PSI rules: draws pairs of samples of one distribution
and counts PSIs above the noise bound and at or above 0.2 (the numbers in docs/monitoring.md).

    PYTHONPATH=src python scripts/psi_noise.py
"""

from __future__ import annotations

import numpy as np

from spark_mlops import monitoring

DRAWS, SEED, QUANTILE, THRESHOLD = 20_000, 1, 0.99, 0.2
# The demo's P(class 1) bins: its 191-row holdout and its 200-row prod batch, pooled.
DEMO_OUTPUT = np.array([24, 64, 23, 14, 17, 26, 11, 12, 0, 0]) + np.array([24, 57, 28, 16, 22, 20, 15, 12, 6, 0])
CASES = {
    "10 equal bins": np.full(10, 0.1),
    "the demo's P(class 1), pooled": DEMO_OUTPUT / DEMO_OUTPUT.sum(),
    "skewed, smallest bins 1.5% and 0.5%": np.array([.3, .2, .15, .1, .08, .07, .05, .03, .015, .005]),
}


def shares(p: np.ndarray, n_e: int, n_a: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(above the bound, old rule: PSI >= threshold, new rule: both) as shares of DRAWS."""
    above = old = new = 0
    for e, a in zip(rng.multinomial(n_e, p, DRAWS), rng.multinomial(n_a, p, DRAWS), strict=True):
        fe = list(e / n_e)
        value = monitoring.psi(fe, list(a / n_a))
        bound = monitoring.psi_noise_bound(n_e, n_a, monitoring.populated_bins(fe, list(a)), QUANTILE)
        above += value > bound
        old += value >= THRESHOLD
        new += value >= THRESHOLD and value > bound
    return above / DRAWS, old / DRAWS, new / DRAWS


def main() -> None:
    rng = np.random.default_rng(SEED)
    for name, p in CASES.items():
        for n_e, n_a in ((191, 200), (1600, 100), (1600, 1500)):
            above, old, new = shares(p, n_e, n_a, rng)
            print(f"{name:38s} n_e={n_e:5d} n_a={n_a:5d}: above the {QUANTILE:.0%} bound {above:.2%}; "
                  f"PSI >= {THRESHOLD}: {old:.2%}; both (drift now): {new:.2%}")


if __name__ == "__main__":
    main()
