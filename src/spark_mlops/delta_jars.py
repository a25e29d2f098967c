"""Delta Lake's jars for the local Spark session: which ones, and where Maven keeps them.

Databricks Runtime ships Delta Lake. Locally the JVM needs the jars of the release the
``delta-spark`` Python package is (pinned once, in pyproject.toml's ``runtime`` extra), built for
this Spark's major.minor and Scala 2.13: the artifact ``configure_spark_with_delta_pip`` would ask
for (delta/pip_utils.py), plus ``delta-storage``, the only one of its dependencies that Spark does
not already ship. ``scripts/bootstrap.sh`` fetches them once into the local Maven repository
(``~/.m2/repository``); a session puts those two files on the driver's class path
(:mod:`spark_mlops.spark`), so no session start resolves anything or goes to the network.

``python -m spark_mlops.delta_jars --missing`` prints the coordinates of the jars not fetched yet,
one per line (what bootstrap asks Maven for).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from spark_mlops.errors import ConfigError

SCALA_VERSION = "2.13"  # Spark 4 is built for Scala 2.13 only


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.name}:{self.version}"

    def path(self, repository: Path) -> Path:
        """Where Maven's local repository layout puts the jar."""
        return repository.joinpath(*self.group.split("."), self.name, self.version, f"{self.name}-{self.version}.jar")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"the Python package {distribution} is not installed: run scripts/bootstrap.sh "
                          "(it installs the pinned runtime and fetches Delta Lake's jars)") from None


def artifacts() -> tuple[Artifact, ...]:
    delta = _version("delta-spark")
    spark = ".".join(_version("pyspark").split(".")[:2])
    return (Artifact("io.delta", f"delta-spark_{spark}_{SCALA_VERSION}", delta),
            Artifact("io.delta", "delta-storage", delta))


def local_repository() -> Path:
    """Maven's default local repository; bootstrap passes the same folder to Maven explicitly."""
    return Path.home() / ".m2" / "repository"


def missing(repository: Path | None = None) -> list[Artifact]:
    repository = repository or local_repository()
    return [a for a in artifacts() if not a.path(repository).is_file()]


def class_path(repository: Path | None = None) -> list[Path]:
    """The jars' files, or one line naming what is missing and the command that fetches it."""
    repository = repository or local_repository()
    absent = missing(repository)
    if absent:
        raise ConfigError(f"Delta Lake's jars are not in {repository} ({', '.join(a.coordinate for a in absent)}): "
                          "run scripts/bootstrap.sh once (it fetches them with Maven)")
    return [a.path(repository) for a in artifacts()]


if __name__ == "__main__":
    if sys.argv[1:] != ["--missing"]:
        sys.exit("usage: python -m spark_mlops.delta_jars --missing")
    for artifact in missing():
        print(artifact.coordinate)
