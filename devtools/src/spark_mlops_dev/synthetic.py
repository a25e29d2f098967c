"""Deterministic synthetic data in the example (Pima diabetes) schema.

Marginals follow the published Pima summary statistics, including the zero-as-missing
convention (about 49 % of Insulin and 30 % of SkinThickness are 0); Outcome follows a
logistic model of glucose, BMI, pedigree, pregnancies and age, so a classifier reaches an
AUC of about 0.8, as on the real data. The same seed and row count always give the same rows,
whatever the chunking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spark_mlops.errors import ConfigError

CHUNK_ROWS = 250_000  # one parquet file per chunk: several files let Spark read in parallel
_ZERO_RATES = {"Glucose": 0.007, "BloodPressure": 0.046, "SkinThickness": 0.296, "Insulin": 0.487, "BMI": 0.014}


def generate(rows: int, seed: int = 7, *, start: int = 0, with_label: bool = True) -> pd.DataFrame:
    """Rows ``start .. start+rows-1`` of the data set for ``seed``."""
    rng = np.random.default_rng([seed, start])
    n = rows
    age = np.clip(21 + rng.exponential(12.0, n), 21, 81).astype(int)
    pregnancies = np.clip(rng.poisson(1.0 + (age - 21) / 10.0), 0, 17)
    glucose = np.clip(rng.normal(121, 31, n), 44, 199).round()
    blood_pressure = np.clip(rng.normal(72, 12, n), 24, 122).round()
    skin = np.clip(rng.normal(29, 10, n), 7, 99).round()
    insulin = np.clip(rng.lognormal(4.8, 0.6, n), 14, 846).round()
    bmi = np.clip(rng.normal(32.4, 6.9, n), 18.2, 67.1).round(1)
    pedigree = np.clip(rng.lognormal(-0.9, 0.6, n), 0.078, 2.42).round(3)
    z = -14.3 + 0.058 * glucose + 0.13 * bmi + 1.5 * pedigree + 0.17 * pregnancies + 0.025 * age
    outcome = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(int)
    frame = pd.DataFrame(
        {
            "patient_id": [f"p{seed}-{i:09d}" for i in range(start, start + n)],
            "Pregnancies": pregnancies.astype(int),
            "Glucose": glucose.astype(int),
            "BloodPressure": blood_pressure.astype(int),
            "SkinThickness": skin.astype(int),
            "Insulin": insulin.astype(int),
            "BMI": bmi,
            "DiabetesPedigreeFunction": pedigree,
            "Age": age,
        }
    )
    for column, rate in _ZERO_RATES.items():  # "not measured" is recorded as 0 in this schema
        frame.loc[rng.random(n) < rate, column] = 0
    if with_label:
        frame["Outcome"] = outcome
    return frame


FEATURES = ("Pregnancies", "Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI",
            "DiabetesPedigreeFunction", "Age")


def parse_shifts(items: list[str] | None) -> dict[str, float]:
    """``["Glucose=+50", "BMI=-3.5"]`` -> ``{"Glucose": 50.0, "BMI": -3.5}``."""
    shifts: dict[str, float] = {}
    for item in items or []:
        name, sep, delta = item.partition("=")
        try:
            shifts[name.strip()] = float(delta)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--shift {item!r}: expected FEATURE=DELTA, e.g. Glucose=+50")
    return shifts


def drift(frame: pd.DataFrame, shifts: dict[str, float] | None = None, nulls: list[str] | None = None) -> pd.DataFrame:
    """A deliberately drifted copy: ``shifts`` added to features (0, "not measured", stays 0),
    ``nulls`` left empty in every row."""
    unknown = sorted((set(shifts or {}) | set(nulls or [])) - set(FEATURES))
    if unknown:
        raise ConfigError(f"--shift/--null: unknown feature(s) {unknown}; features: {', '.join(FEATURES)}")
    out = frame.copy()
    for name, delta in (shifts or {}).items():
        measured = out[name] != 0
        shifted = out[name].astype(float) + delta
        out[name] = shifted.where(measured, out[name]).astype(out[name].dtype if float(delta).is_integer() else float)
    for name in nulls or []:
        out[name] = pd.array([None] * len(out), dtype="Float64")
    return out


def write(output: str, *, rows: int, seed: int = 7, fmt: str | None = None, with_label: bool = True,
          shifts: dict[str, float] | None = None, nulls: list[str] | None = None) -> Path:
    """Write ``rows`` rows to a CSV file or a parquet folder (one file per chunk), drifted by
    ``shifts``/``nulls`` when given (see :func:`drift`)."""
    if rows < 1:
        raise ConfigError(f"--rows must be at least 1, found {rows}")
    drift(generate(1, seed), shifts, nulls)  # unknown names fail before anything is written
    path = Path(output)
    fmt = fmt or ("csv" if path.suffix == ".csv" else "parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    starts = range(0, rows, CHUNK_ROWS)
    if fmt == "csv":
        tmp = path.with_name(f".{path.name}.tmp")
        for i, start in enumerate(starts):
            chunk = drift(generate(min(CHUNK_ROWS, rows - start), seed, start=start, with_label=with_label),
                          shifts, nulls)
            chunk.to_csv(tmp, index=False, mode="w" if i == 0 else "a", header=i == 0)
        tmp.replace(path)
    else:
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("part-*.parquet"):
            old.unlink()
        for i, start in enumerate(starts):
            chunk = drift(generate(min(CHUNK_ROWS, rows - start), seed, start=start, with_label=with_label),
                          shifts, nulls)
            chunk.to_parquet(path / f"part-{i:05d}.parquet", index=False)
    changed = [f"{k}{v:+g}" for k, v in (shifts or {}).items()] + [f"{k}=null" for k in nulls or []]
    print(f"generate-data: wrote {rows} rows (seed {seed}) to {path}"
          + (f", drifted: {', '.join(changed)}" if changed else ""))
    return path
