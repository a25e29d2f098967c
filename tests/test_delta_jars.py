"""Delta Lake's jars for local Spark: which ones, where Maven keeps them, the one-line errors when
they are missing, and the set-up step that fetches them (scripts/fetch-delta-jars.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from spark_mlops import delta_jars
from spark_mlops.errors import ConfigError
from tests.conftest import REPO_ROOT

FETCH = REPO_ROOT / "scripts" / "fetch-delta-jars.sh"


def test_the_jars_follow_the_installed_delta_spark_and_pyspark(tmp_path):
    delta, spark = metadata.version("delta-spark"), metadata.version("pyspark")
    spark_line = ".".join(spark.split(".")[:2])
    assert [a.coordinate for a in delta_jars.artifacts()] == [
        f"io.delta:delta-spark_{spark_line}_2.13:{delta}", f"io.delta:delta-storage:{delta}"]
    storage = delta_jars.artifacts()[1]
    assert storage.path(tmp_path) == tmp_path / "io/delta/delta-storage" / delta / f"delta-storage-{delta}.jar"


def test_missing_jars_are_one_line_naming_the_set_up_step(tmp_path):
    with pytest.raises(ConfigError) as err:
        delta_jars.class_path(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "run scripts/bootstrap.sh once" in message
    assert all(a.coordinate in message for a in delta_jars.artifacts())
    present = delta_jars.artifacts()[0].path(tmp_path)
    present.parent.mkdir(parents=True)
    present.write_bytes(b"")
    assert delta_jars.missing(tmp_path) == [delta_jars.artifacts()[1]]


def test_the_session_runs_delta_from_the_local_maven_repository(spark):
    class_path = spark.sparkContext.getConf().get("spark.driver.extraClassPath").split(os.pathsep)
    assert class_path == [str(p) for p in delta_jars.class_path()]
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    loaded = spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
    where = loaded.getProtectionDomain().getCodeSource().getLocation().getPath()
    assert where == class_path[0]  # the app class path, not a copy under spark.jars


def _fetch(home: Path, *, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "MAVEN_OPTS": f"-Duser.home={home}",  # Maven's settings follow user.home
           "PYTHONPATH": str(REPO_ROOT / "src")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(["bash", str(FETCH), sys.executable], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_with_the_jars_present_the_set_up_does_nothing():
    done = _fetch(Path.home())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_maven_the_set_up_says_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to("/bin/bash")
    done = _fetch(tmp_path, path=str(bin_dir))
    assert done.returncode == 1
    assert done.stderr.startswith("bootstrap: Maven (mvn) is needed once, to fetch Delta Lake's jars")
    assert "apt-get install -y maven" in done.stderr and not list(tmp_path.glob(".m2/repository/io"))


@pytest.mark.slow
def test_an_unreachable_maven_repository_is_one_line_with_what_to_do(tmp_path):
    (tmp_path / ".m2").mkdir()
    (tmp_path / ".m2" / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>unreachable</id><mirrorOf>*</mirrorOf>"
        "<url>https://127.0.0.1:9/maven2</url></mirror></mirrors></settings>")
    done = _fetch(tmp_path)
    assert done.returncode == 1
    fetching, error = done.stderr.splitlines()
    assert fetching.startswith("bootstrap: fetching Delta Lake's jars into")
    coordinate = delta_jars.artifacts()[0].coordinate
    assert error == (f"bootstrap: could not fetch {coordinate} from/to unreachable (https://127.0.0.1:9/maven2): "
                     "Connect to 127.0.0.1:9 [/127.0.0.1] failed: Connection refused; check the network, or the "
                     "proxy or mirror in ~/.m2/settings.xml, then run this command again.")
