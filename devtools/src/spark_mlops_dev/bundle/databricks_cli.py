"""The real Databricks CLI: the one resolver of this bundle.

``databricks bundle validate -o json -t T [--var k=v ...]`` prints a target as the CLI deploys it:
targets merged, variables resolved, development mode and presets applied, ``run_as`` and
permissions set, paths rewritten. The runner, the demo, ``status``/``approve`` and the validator
read every target's configuration from there (:func:`resolve_bundle`, :func:`validate`); nothing
else resolves the bundle.

* ``bundle validate`` needs a workspace (it reads the current user): locally it talks to the CLI's
  own fake workspace (:mod:`.fake_workspace`), started once per process on first use and stopped at
  exit, with profiles that reach nothing else. Its identities decide the names: dev is deployed by
  the user ``tester@databricks.com`` (``[dev tester]`` names), test/staging/prod by the service
  principal, as CD deploys them.
* The CLI runs on a copy of the bundle (:func:`.fake_workspace.copy_bundle`: no local deployment
  state read or written; a stand-in for the prebuilt wheel when dist/ has none, so a local run of
  staging needs no wheel build).
* Its output is cached in the state folder (``<state>/cache/bundle-validate``) per hash of the
  bundle files the CLI reads, target, variables and CLI build: a repeated run starts no CLI.
* References to other resources (``${resources.<type>.<key>.<field>}``) are left for deploy time by
  the CLI; :func:`resolve_resource_refs` fills those that name a field of the configuration (ids of
  deployed resources stay as written).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import concurrency, fake_workspace
from spark_mlops_dev.bundle.files import bundle_files, format_path
from spark_mlops_dev.bundle.resolved import Bundle

VALIDATE_TIMEOUT_S = 120
CACHE_FOLDER = ("cache", "bundle-validate")
CACHE_FORMAT = 1  # bump when what is cached changes
OVERRIDES_GLOB = ".databricks/bundle/*/variable-overrides.json"
SETUP_HINT = ("the Databricks CLI and its fake workspace are not set up: run `source scripts/bootstrap.sh` "
              f"(needs Go >= 1.26), or set {fake_workspace.BIN_ENV} to the folder "
              "scripts/ci/build-databricks-cli.sh prints")

_RESOURCE_REF = re.compile(r"\$\{resources\.([\w-]+)\.([\w-]+)\.([\w.\[\]-]+)\}")
# A diagnostic as the CLI prints it (libs/cmdio/render.go errorTemplate / warningTemplate):
# "Error: summary", then "  at <path>" and "  in <file>:<line>:<col>" lines, then an optional detail.
_DIAG_HEAD = re.compile(r"^(Error|Warning|Recommendation): (.*)$")
_DIAG_AT = re.compile(r"^  (?:at |   )(\S.*)$")
_DIAG_IN = re.compile(r"^  (?:in |   )(.+?):(\d+):(\d+)$")


@dataclass(frozen=True)
class Diagnostic:
    """One error or warning of ``bundle validate``, with where the CLI says it was written."""

    severity: str  # Error | Warning | Recommendation
    summary: str
    path: str = ""
    file: str = ""
    line: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else (f"{self.file}: " if self.file else "")
        at = f"{self.path}: " if self.path else ""
        return f"{where}{at}{self.text}"

    @property
    def text(self) -> str:
        """The summary, with the CLI's detail when it adds one (on the same line)."""
        return f"{self.summary} ({self.detail})" if self.detail else self.summary


@dataclass
class Validation:
    """What ``bundle validate -o json --include-locations -t target`` answered."""

    target: str | None
    returncode: int
    config: dict | None  # None when the CLI printed no configuration
    diagnostics: list[Diagnostic] = field(default_factory=list)
    cached: bool = False

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "Error"]


def parse_diagnostics(stderr: str) -> list[Diagnostic]:
    """The CLI's diagnostics from its stderr (one per ``Error:``/``Warning:`` block)."""
    out: list[Diagnostic] = []
    current: dict | None = None
    detail: list[str] = []

    def flush() -> None:
        if current is not None:
            out.append(Diagnostic(**current, detail=" ".join(d for d in detail if d).strip()))

    for line in stderr.splitlines():
        head = _DIAG_HEAD.match(line)
        if head:
            flush()
            current, detail = {"severity": head.group(1), "summary": head.group(2).strip()}, []
            continue
        if current is None:
            continue
        at, loc = _DIAG_AT.match(line), _DIAG_IN.match(line)
        if loc and "file" not in current:
            current["file"], current["line"] = loc.group(1), int(loc.group(2))
        elif at and not loc and "path" not in current and not detail:
            current["path"] = at.group(1).strip()
        elif line.strip():
            detail.append(line.strip())
    flush()
    return out


# ---------------------------------------------------------------- the local fake workspace


def cli_bin() -> Path:
    """The folder with ``databricks`` and ``fake-workspace`` (see :func:`.fake_workspace.find_bin`)."""
    found = fake_workspace.find_bin()
    if found is None:
        raise ConfigError(SETUP_HINT)
    return found


_local: fake_workspace.FakeWorkspace | None = None
_local_lock = threading.Lock()


def local_workspace() -> fake_workspace.FakeWorkspace:
    """This process's fake workspace: started on first use, stopped when the process exits."""
    global _local
    with _local_lock:
        if _local is None or _local.proc is None or _local.proc.poll() is not None:
            ws = fake_workspace.FakeWorkspace(cli_bin())
            try:
                ws.start()
            except (OSError, fake_workspace.CliError) as exc:
                raise ConfigError(f"the local fake workspace did not start: {exc}") from exc
            _local = ws
            atexit.register(_stop_local, ws)
        return _local


def _stop_local(ws: fake_workspace.FakeWorkspace) -> None:
    try:
        ws.stop()
    except fake_workspace.CliError:
        pass  # a validate-only workspace has nothing to report at exit


def stop_local_workspace() -> None:
    """Stop this process's fake workspace now (a test session's end; it is also stopped at exit)."""
    global _local
    with _local_lock:
        ws, _local = _local, None
    if ws is not None:
        _stop_local(ws)


# ---------------------------------------------------------------- validate, cached


def _environment_variables() -> dict[str, str]:
    """``BUNDLE_VAR_<name>`` of this process: the CLI reads them as variable values (set_variables.go)."""
    return {k: v for k, v in os.environ.items() if k.startswith("BUNDLE_VAR_")}


def _override_files(root: Path) -> list[Path]:
    """``.databricks/bundle/<target>/variable-overrides.json``: variable values the CLI reads per
    target (bundle/config/mutator/set_variables.go), the one place for complex values besides the YAML."""
    return sorted(root.glob(f"{OVERRIDES_GLOB}"))


def _cache_key(root: Path, target: str | None, variables: Mapping[str, str], bin_dir: Path) -> str:
    """Everything ``bundle validate`` reads that can change its answer: the bundle's YAML files and
    variable-overrides files (by content), the prebuilt wheels' names, the target, the variables
    (``--var`` and ``BUNDLE_VAR_*``) and the CLI build."""
    h = hashlib.sha256()
    cli = bin_dir / "databricks"
    stat = cli.stat()
    h.update(json.dumps([CACHE_FORMAT, str(cli.resolve()), stat.st_size, stat.st_mtime_ns, target or "",
                         sorted((str(k), str(v)) for k, v in variables.items()),
                         sorted(_environment_variables().items()),
                         sorted(fake_workspace.BUNDLE_VARIABLES.items())]).encode())
    try:
        files = [rel for rel, _ in bundle_files(root)]
    except ConfigError:
        files = []  # the CLI reports what is wrong with them
    files += [p.relative_to(root).as_posix() for p in _override_files(root)]
    for rel in files:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    h.update("\0".join(sorted(p.name for p in (root / "dist").glob("*.whl"))).encode())
    return h.hexdigest()[:32]


def _cache_dir() -> Path:
    return concurrency.state_dir().resolve().joinpath(*CACHE_FOLDER)


def validate(root: str | os.PathLike, target: str | None, variables: Mapping[str, str] | None = None) -> Validation:
    """``databricks bundle validate -o json --include-locations -t target`` on a copy of the bundle
    at ``root`` against the local fake workspace; cached (see the module docstring). Never raises
    for a bundle the CLI refuses: the Validation carries its diagnostics."""
    root = Path(root).resolve()
    variables = {str(k): str(v) for k, v in (variables or {}).items()}
    bin_dir = cli_bin()
    cache = _cache_dir() / f"{_cache_key(root, target, variables, bin_dir)}.json"
    if cache.is_file():
        try:
            data = json.loads(cache.read_text())
            return Validation(data["target"], data["returncode"], data["config"],
                              [Diagnostic(**d) for d in data["diagnostics"]], cached=True)
        except (ValueError, KeyError, TypeError):
            cache.unlink(missing_ok=True)
    ws = local_workspace()
    args = ["bundle", "validate", "-o", "json",
            # hidden flag: file:line of what was written where (databricks/cli cmd/bundle/validate.go)
            "--include-locations",
            *(["-t", target] if target else []),
            # --var is a string-slice flag that splits on commas, so a value with a comma goes as
            # BUNDLE_VAR_<name>, which the CLI reads whole (bundle/config/mutator/set_variables.go)
            *(f"--var={k}={v}" for k, v in variables.items() if "," not in str(v))]
    with_commas = {f"BUNDLE_VAR_{k}": str(v) for k, v in variables.items() if "," in str(v)}
    with tempfile.TemporaryDirectory(prefix="bundle-validate-") as tmp:
        copy = fake_workspace.copy_bundle(root, Path(tmp) / "bundle", wheel=_prebuilt_wheel(root))
        for overrides in _override_files(root):  # the only local state the CLI's answer depends on
            (copy / overrides.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(overrides, copy / overrides.relative_to(root))
        try:
            r = ws.cli(*args, cwd=copy, check=False, timeout=VALIDATE_TIMEOUT_S, env={**_environment_variables(), **with_commas})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"databricks bundle validate{' -t ' + target if target else ''}: {exc}") from exc
    try:
        config = json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        config = None
    result = Validation(target, r.returncode, config, [_located(root, d) for d in parse_diagnostics(r.stderr)])
    if r.returncode != 0 and not result.errors:  # not a diagnostic: say the CLI's own last line
        lines = [line for line in r.stderr.splitlines() if line.strip()] or ["no output"]
        result.diagnostics.append(Diagnostic("Error", lines[-1].removeprefix("Error: ")))
    if config is None and r.returncode == 0:
        raise ConfigError(f"databricks bundle validate -o json: exited 0 without a configuration: {r.stderr[-500:]}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp_file.write_text(json.dumps({"target": target, "returncode": r.returncode, "config": config,
                                    "diagnostics": [asdict(d) for d in result.diagnostics]}))
    os.replace(tmp_file, cache)
    return result


_REFERENCE = re.compile(r"\$\{[A-Za-z][\w.\[\]-]*\}")


def _located(root: Path, diagnostic: Diagnostic) -> Diagnostic:
    """A diagnostic without a location (the CLI has none for a reference it cannot resolve:
    bundle/config/mutator/resolve_variable_references.go returns the bare error) located by the
    first reference its summary names: the file, YAML path and line where that text is written."""
    if diagnostic.file:
        return diagnostic
    for ref in _REFERENCE.findall(diagnostic.summary):
        try:
            files = bundle_files(root)
        except ConfigError:
            return diagnostic
        for rel, data in files:
            path = _path_of_text(data, ref)
            if path is None:
                continue
            line = next((n for n, text in enumerate((root / rel).read_text(encoding="utf-8").splitlines(), 1)
                         if ref in text), None)
            return replace(diagnostic, file=rel, line=line, path=diagnostic.path or format_path(path))
    return diagnostic


def _path_of_text(node: Any, text: str, path: tuple = ()) -> tuple | None:
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return path if isinstance(node, str) and text in node else None
    for key, value in items:
        found = _path_of_text(value, text, (*path, key))
        if found is not None:
            return found
    return None


def _prebuilt_wheel(root: Path) -> Path | None:
    wheels = sorted((root / "dist").glob("*.whl"))
    return wheels[-1] if wheels else None


def resolve_resource_refs(config: dict) -> dict:
    """``config`` with every ``${resources.<type>.<key>.<field>}`` that names a string field of
    ``config`` replaced by it (recursively); the rest (ids, URLs) stays as written."""
    resources = config.get("resources") or {}

    def field_of(m: re.Match) -> str:
        node: Any = (resources.get(m.group(1)) or {}).get(m.group(2))
        for part in m.group(3).split("."):
            if not isinstance(node, dict) or part not in node:
                return m.group(0)
            node = node[part]
        return node if isinstance(node, str) else m.group(0)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            for _ in range(8):  # a field may itself hold a reference
                new = _RESOURCE_REF.sub(field_of, node)
                if new == node:
                    break
                node = new
        return node

    return walk(config)


def bundle_of(root: str | os.PathLike, validation: Validation) -> Bundle:
    """The :class:`Bundle` of a configuration the CLI printed."""
    config = dict(validation.config or {})
    locations = config.pop("__locations", None) or {}
    config = resolve_resource_refs(config)
    values = {name: spec.get("value") for name, spec in (config.get("variables") or {}).items()
              if isinstance(spec, dict)}
    target = (config.get("bundle") or {}).get("target") or validation.target or ""
    return Bundle(root=Path(root).resolve(), target=target, config=config, variables=values, locations=locations)


def resolve_bundle(root: str | os.PathLike, target: str | None = None,
                   variables: Mapping[str, str] | None = None) -> Bundle:
    """One target of the bundle at ``root`` (the CLI's default target when None), as the real CLI
    resolves it; a bundle the CLI refuses raises ConfigError with the CLI's first error."""
    result = validate(root, target, variables)
    if result.returncode != 0 or result.config is None:
        first = result.errors[0] if result.errors else Diagnostic("Error", "no configuration printed")
        raise ConfigError(f"databricks bundle validate{' -t ' + target if target else ''}: {first}")
    return bundle_of(root, result)
