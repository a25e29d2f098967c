from __future__ import annotations

import pandas as pd

from spark_mlops_dev import synthetic


def test_same_seed_same_rows_and_different_seed_different_rows():
    assert synthetic.generate(500, seed=3).equals(synthetic.generate(500, seed=3))
    assert not synthetic.generate(500, seed=3).equals(synthetic.generate(500, seed=4))


def test_chunked_parquet_equals_the_rows_of_each_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 300)
    out = synthetic.write(str(tmp_path / "data"), rows=700, seed=5, fmt="parquet")
    files = sorted(out.glob("part-*.parquet"))
    assert len(files) == 3
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert len(frame) == 700 and frame["patient_id"].is_unique
    expected = synthetic.generate(300, seed=5, start=300)
    pd.testing.assert_frame_equal(pd.read_parquet(files[1]), expected)


def test_realistic_ranges_zero_as_missing_and_signal():
    frame = synthetic.generate(20_000, seed=7)
    assert 0.25 < frame["Outcome"].mean() < 0.45
    assert 0.40 < (frame["Insulin"] == 0).mean() < 0.55
    assert 0.25 < (frame["SkinThickness"] == 0).mean() < 0.35
    assert frame["Age"].between(21, 81).all()
    # Glucose carries signal: diabetics have clearly higher measured glucose.
    measured = frame[frame["Glucose"] > 0]
    by_class = measured.groupby("Outcome")["Glucose"].mean()
    assert by_class[1] - by_class[0] > 15


def test_unlabelled_batch_has_no_label():
    assert "Outcome" not in synthetic.generate(10, with_label=False).columns
