"""The progress line: silent unless stderr is a terminal; on one, Spark's stage and tasks."""

from __future__ import annotations

import io
import time

from spark_mlops.progress import CLEAR, StageSnapshot, progress, render


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_names_the_step_stage_tasks_and_rows():
    line = render("score", 12.34, StageSnapshot(7, "parquet at Native.java:0", 3, 8), 1_250_000)
    assert line == "[score] 12.3 s | stage 7 (parquet at Native.java:0): 3/8 tasks | 1,250,000 rows read"
    assert render("train", 0.0, None, None) == "[train] 0.0 s"
    assert len(render("x", 1.0, StageSnapshot(1, "n" * 200, 0, 1), 5, width=60)) == 60


def test_nothing_is_written_when_the_stream_is_not_a_terminal(spark):
    out = io.StringIO()
    with progress("score", stream=out, delay=0, interval=0.01):
        spark.range(0, 1000, numPartitions=2).count()
        time.sleep(0.1)
    assert out.getvalue() == ""


def test_on_a_terminal_the_line_shows_the_running_stage_then_clears(spark, tmp_path, capsys):
    data = str(tmp_path / "rows.parquet")
    spark.range(0, 1000, numPartitions=4).write.parquet(data)
    terminal = FakeTerminal()

    def slow(row):
        time.sleep(0.002)
        return row

    with progress("score", stream=terminal, delay=0, interval=0.05):
        with progress("inner"):  # nested: the innermost name is shown, no second display
            assert spark.read.parquet(data).rdd.map(slow).count() == 1000
        time.sleep(0.2)  # one more frame after the job: rows read are counted once tasks finish
        print("score: done")
    text = terminal.getvalue()
    frames = [f for f in text.split(CLEAR) if f]
    assert frames, text
    assert any(f.startswith("[inner] ") and " tasks" in f for f in frames), frames
    assert any("1,000 rows read" in f for f in frames), frames
    assert text.endswith(CLEAR)  # the line is cleared before the step's own output and at the end
    assert capsys.readouterr().out == "score: done\n"
