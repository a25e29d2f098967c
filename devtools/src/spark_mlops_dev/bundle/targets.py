"""What a bundle target means for the lifecycle commands run locally: its model, catalog, schema.

``spark-mlops status -t prod`` (and every lifecycle command given ``-t TARGET`` without an
explicit ``--model-name``) reads the registered model, catalog and schema that the target's
jobs pass to their tasks, from the same YAML, so a local command and the bundle's jobs always
name the same model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from spark_mlops.config import Settings, local_tracking_uri
from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
from spark_mlops_dev.bundle.resolved import Bundle


def bundle_root(start: Path | None = None) -> Path:
    """The folder with databricks.yml: the current one or a parent, else this source checkout."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, *Path(__file__).resolve().parents):
        if (folder / "databricks.yml").is_file():
            return folder
    raise ConfigError("no databricks.yml found in this folder, its parents, or the source checkout")


def task_parameters(bundle: Bundle) -> dict:
    """The named parameters of the first wheel task that names the model (every job passes the same)."""
    for job in bundle.jobs.values():
        for task in job.get("tasks") or []:
            named = (task.get("python_wheel_task") or {}).get("named_parameters") or {}
            if "model-name" in named:
                return named
    raise ConfigError(f"target {bundle.target}: no task of the bundle passes --model-name")


def settings_for_target(settings: Settings, bundle: Bundle) -> Settings:
    """``settings`` as the target's tasks see them: its model name, catalog and schema, and locally
    its workspace's tracking store (when the settings use the local default)."""
    named = task_parameters(bundle)
    tracking = settings.tracking_uri
    if tracking == local_tracking_uri(settings.state_dir, settings.target):
        tracking = local_tracking_uri(settings.state_dir, bundle.target)
    return replace(settings, model_name=str(named["model-name"]), catalog=str(named["catalog"]),
                   schema=str(named["schema"]), target=bundle.target, tracking_uri=tracking)


def load_local(target: str, root: Path | None = None) -> Bundle:
    return resolve_bundle(root or bundle_root(), target)
