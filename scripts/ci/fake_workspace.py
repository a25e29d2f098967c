"""The fake workspace for CI's scripts: the dev kit's (spark_mlops_dev.bundle.fake_workspace), with
this folder's job runner (fake_workspace_runner.py) for workspaces that run the jobs deployed to them."""

from __future__ import annotations

from pathlib import Path

from spark_mlops_dev.bundle import fake_workspace as _kit
from spark_mlops_dev.bundle.fake_workspace import (  # noqa: F401 (the names CI's scripts import)
    BIN_ENV,
    BUNDLE_VARIABLES,
    PROFILES,
    SERVICE_PRINCIPAL,
    TARGET_PROFILES,
    USER,
    CliError,
    Result,
    copy_bundle,
    find_bin,
)

RUNNER = Path(__file__).resolve().with_name("fake_workspace_runner.py")


class FakeWorkspace(_kit.FakeWorkspace):
    """:class:`spark_mlops_dev.bundle.fake_workspace.FakeWorkspace` that runs jobs with RUNNER."""

    def __init__(self, *args, runner=RUNNER, **kwargs):
        super().__init__(*args, runner=runner, **kwargs)
