"""A job cluster, locally: one Spark driver JVM that the tasks naming the cluster share.

On Databricks the tasks of a job run that name the same ``job_cluster_key`` run on one cluster,
started for the run and terminated after it ("Use shared job clusters", docs: jobs/use-compute):
each task's Python runs in a process of its own against the cluster's driver, and
``SparkSession.builder.getOrCreate()`` returns the cluster's session (docs: jobs/jar-create,
"Use the Databricks Spark session"). Locally:

* :class:`Clusters` (one per job run) starts a cluster's driver when the first task that names it
  starts, and stops it as soon as no task of the run that names it is left to run (or when the
  run ends). Which cluster a task names: :func:`compute_of`.
* The driver is ``python -m spark_mlops_dev.bundle.cluster``: it builds the project's local
  session (``spark_mlops.spark.get_spark``: the same JVM options, Delta Lake, the class archive),
  prints how to reach its py4j gateway on one line, then serves until its stdin closes, when it
  stops Spark. Its JVM (pyspark's ``launch_gateway``) ends with it.
* A task's process attaches before its entry point runs (:func:`attach`, from task_process.py):
  pyspark's ``launch_gateway`` connects to a running gateway when ``PYSPARK_GATEWAY_PORT`` and
  ``PYSPARK_GATEWAY_SECRET`` are set (pyspark/java_gateway.py); the task gets a Python
  SparkContext over the cluster's JVM SparkContext and a SparkSession of its own
  (``newSession()``: its SQL settings, temporary views and UDFs are its own, the SparkContext,
  the catalog and cached data are the cluster's), which ``SparkSession.builder.getOrCreate()``
  and ``SparkSession.getActiveSession()`` return. The lifecycle code does not know.

What pyspark would do otherwise, and what is done instead (pyspark 4.1 ``core/context.py``,
``sql/session.py``):

* ``SparkContext()`` in a process attached to a JVM that already has a SparkContext creates a new
  ``JavaSparkContext``, which the JVM refuses (one SparkContext per JVM). In a task process a new
  Python SparkContext takes the cluster's JVM SparkContext instead (``_initialize_context``).
* ``spark.stop()`` / ``sc.stop()`` stop the JVM's SparkContext, for every task on the cluster.
  Databricks manages the cluster's context (a task uses the session it is given, docs:
  jobs/jar-create); here a task's ``stop()`` detaches that task's Python from the context, says so
  on stderr, and the cluster's context stays up for the run's other tasks. A later
  ``getOrCreate()`` in the task attaches again.
* A task stopped at its timeout (or canceled, or dead of a SIGKILL) leaves its Spark jobs running
  in the JVM: the runner cancels them through the driver (``cancelJobsWithTag`` with the task
  session's job tag, which every SQL execution of the session carries), and the cluster goes on
  serving the next task, as a cluster outlives a task it stops. Objects the dead Python held in
  the JVM stay referenced until the cluster stops.
* Python UDF workers are started by the JVM with the interpreter the attaching task names
  (``PYSPARK_PYTHON``, this task's own interpreter unless set).

An all-purpose cluster (:func:`this_process`, the runner's ``shared_cluster`` option): the
runner's own Spark driver serves every task of every run it starts, and no run stops it, as an
all-purpose cluster named by ``existing_cluster_id`` serves the runs of any job and outlives them
(Jobs API, ``existing_cluster_id``: "an existing cluster that is used for all runs"). Tasks still
run in processes of their own with a session each; what they share beyond one run is the
driver's JVM (its cache, its catalog). The tests of whole jobs use it, so that a run costs its
tasks and not a cold JVM; the default stays a job cluster per run, as the bundle's jobs declare.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

GATEWAY_PORT = "PYSPARK_GATEWAY_PORT"
GATEWAY_SECRET = "PYSPARK_GATEWAY_SECRET"
TAG_FILE = "SPARK_MLOPS_CLUSTER_TAG_FILE"  # where an attached task writes its session's job tag
STOP_GRACE_S = 30.0  # the driver's own spark.stop() after its stdin closes, then SIGTERM, SIGKILL
DETACHED = ("spark.stop() in a task: the job cluster's SparkContext is shared by the run's tasks and "
            "stays up; this task's Python is detached from it")


class ClusterError(RuntimeError):
    """The cluster's driver did not start."""


def compute_of(task_key: str, spec: Mapping) -> str | None:
    """The cluster a task runs on, as a name unique within its job run: ``job_cluster_key`` (shared
    by the tasks naming it), ``existing_cluster_id`` (shared the same way within the run), a task's
    ``new_cluster`` (its own). None for a task with no cluster (an ``environment_key``, serverless):
    such a task starts Spark in its own process if it uses any."""
    if spec.get("job_cluster_key"):
        return f"job_cluster {spec['job_cluster_key']}"
    if spec.get("existing_cluster_id"):
        return f"existing_cluster {spec['existing_cluster_id']}"
    if spec.get("new_cluster"):
        return f"new_cluster of task {task_key}"
    return None


# ---------------------------------------------------------------- the runner's side


@dataclass
class Gateway:
    """A running Spark driver that tasks attach to: its py4j gateway, a folder for their job tags."""

    port: int
    secret: str
    tags: Path  # a folder for the attached tasks' job tags

    def env(self, tag_file: Path) -> dict[str, str]:
        return {GATEWAY_PORT: str(self.port), GATEWAY_SECRET: self.secret, TAG_FILE: str(tag_file)}

    def cancel_jobs_of(self, tag_file: Path) -> None:
        """Cancel the Spark jobs a task left running (it was stopped, or died)."""
        try:
            tag = tag_file.read_text(encoding="utf-8").strip()
        except OSError:
            return  # it never attached
        tag_file.unlink(missing_ok=True)
        self._cancel(tag)

    def _cancel(self, tag: str) -> None:
        raise NotImplementedError


@dataclass
class Driver(Gateway):
    """A job cluster's driver: a process of its own, started for a run (:func:`start_driver`)."""

    name: str = ""
    proc: subprocess.Popen | None = None
    jvm_pid: int = 0
    app_id: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _cancel(self, tag: str) -> None:
        with self.lock, contextlib.suppress(OSError, ValueError):
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(f"cancel {tag}\n")
            self.proc.stdin.flush()

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Close the driver's stdin (it stops Spark and exits), SIGTERM then SIGKILL its process
        group (its JVM and Python workers) when it outlives ``grace``."""
        assert self.proc is not None
        with self.lock, contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        _wait_gone(self.jvm_pid, 5.0)
        with contextlib.suppress(OSError):
            for leftover in self.tags.iterdir():
                leftover.unlink()
            self.tags.rmdir()


def start_driver(name: str, env: Mapping[str, str]) -> Driver:
    """Start a cluster's driver with the task environment ``env``; ClusterError when it does not
    come up (its stderr, which is this process's, says why)."""
    proc = subprocess.Popen([sys.executable, "-m", __name__], env=dict(env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("{"):
        code = _ended(proc)
        raise ClusterError(f"cluster {name}: its Spark driver exited (code {code}) before Spark started")
    info = json.loads(line)
    threading.Thread(target=_forward, args=(proc.stdout,), name=f"driver-{name}", daemon=True).start()
    return Driver(name=name, proc=proc, port=int(info["port"]), secret=str(info["secret"]),
                  jvm_pid=int(info["jvm_pid"]), app_id=str(info["app_id"]),
                  tags=Path(tempfile.mkdtemp(prefix="cluster-tags-")))


def _ended(proc: subprocess.Popen) -> int | None:
    try:
        return proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _forward(stream) -> None:
    for line in stream:  # anything the driver (or its JVM) prints on stdout after the handshake
        sys.stderr.write(line)
    stream.close()


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)


class SharedDriver(Gateway):
    """This process's own Spark driver, serving as an all-purpose cluster (module docstring)."""

    def _cancel(self, tag: str) -> None:
        from pyspark import SparkContext

        context = SparkContext._active_spark_context
        if context is not None:
            with contextlib.suppress(Exception):
                context.cancelJobsWithTag(tag)


_shared: SharedDriver | None = None
_shared_lock = threading.Lock()


def this_process() -> SharedDriver:
    """The gateway of this process's Spark (the active session's, else the project's local session,
    started now): one per process, never stopped by a run."""
    global _shared
    with _shared_lock:
        from pyspark import SparkContext

        if _shared is None or SparkContext._active_spark_context is None:
            from spark_mlops.config import build_settings
            from spark_mlops.spark import get_spark

            params = get_spark(build_settings()).sparkContext._gateway.gateway_parameters
            _shared = SharedDriver(port=params.port, secret=params.auth_token,
                                   tags=Path(tempfile.mkdtemp(prefix="cluster-tags-")))
        return _shared


class Clusters:
    """The clusters of one job run: started on a task's first need, stopped when the run no longer
    needs them. ``uses``: the cluster each task of the run names (:func:`compute_of`; None: none).
    ``shared``: an all-purpose cluster that serves every task that names a cluster, and that the
    run neither starts nor stops (:func:`this_process`)."""

    def __init__(self, uses: Mapping[str, str | None], task_env: Callable[[], dict[str, str]],
                 shared: Callable[[], Gateway] | None = None):
        self.shared = shared
        self.compute = dict(uses)  # task key -> cluster name (or None)
        self.left: dict[str, int] = {}
        for name in self.compute.values():
            if name is not None:
                self.left[name] = self.left.get(name, 0) + 1
        self.task_env = task_env
        self.running: dict[str, Driver] = {}
        self.done: set[str] = set()
        self.lock = threading.Lock()
        self.starting: dict[str, threading.Lock] = {name: threading.Lock() for name in self.left}

    def driver_for(self, task_key: str) -> Gateway | None:
        """The running driver of the task's cluster, started now if it is not running; None for a
        task with no cluster. Raises ClusterError when the driver does not start."""
        name = self.compute.get(task_key)
        if name is None:
            return None
        if self.shared is not None:
            return self.shared()
        with self.starting[name]:
            with self.lock:
                if name in self.running:
                    return self.running[name]
            driver = start_driver(name, self.task_env())
            with self.lock:
                self.running[name] = driver
            return driver

    def release(self, task_key: str) -> None:
        """The task has ended (or will not run): stop its cluster when no task left needs it."""
        name = self.compute.get(task_key)
        with self.lock:
            if name is None or task_key in self.done:
                return
            self.done.add(task_key)
            self.left[name] -= 1
            driver = self.running.pop(name, None) if self.left[name] <= 0 else None
        if driver is not None:
            driver.stop()

    def close(self) -> None:
        """Stop every cluster still running (the run has ended)."""
        with self.lock:
            drivers = list(self.running.values())
            self.running.clear()
        for driver in drivers:
            driver.stop()


# ---------------------------------------------------------------- the task's side


def attach() -> None:
    """In a task's process, before its entry point runs: join the cluster's driver whose gateway
    the environment names (see the module docstring)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python UDF workers: this interpreter
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    gateway = launch_gateway()  # PYSPARK_GATEWAY_PORT is set: connects, launches nothing
    SparkContext._initialize_context = _cluster_context  # type: ignore[method-assign]
    SparkContext.stop = _detach  # type: ignore[method-assign]
    jvm = gateway.jvm
    sc = SparkContext(gateway=gateway, conf=SparkConf(_jconf=jvm.org.apache.spark.SparkContext.getOrCreate().getConf()))
    session_class = SparkSession._get_j_spark_session_class(jvm)
    default = session_class.getDefaultSession()
    spark = SparkSession(sc, jsparkSession=default.get().newSession() if default.isDefined() else None)
    tag_file = os.environ.get(TAG_FILE)
    if tag_file:
        with contextlib.suppress(Exception):  # without a tag the runner cannot cancel what it leaves
            Path(tag_file).write_text(str(spark._jsparkSession.sessionJobTag()), encoding="utf-8")


def _cluster_context(self, jconf):  # SparkContext._initialize_context in a task process
    jvm = self._jvm
    return jvm.JavaSparkContext(jvm.org.apache.spark.SparkContext.getOrCreate())


def _detach(self) -> None:  # SparkContext.stop in a task process
    from pyspark import SparkContext

    if getattr(self, "_jsc", None) is not None:
        print(DETACHED, file=sys.stderr, flush=True)
    self._jsc = None
    if getattr(self, "_accumulatorServer", None):
        self._accumulatorServer.shutdown()
        self._accumulatorServer = None
    with SparkContext._lock:
        SparkContext._active_spark_context = None


# ---------------------------------------------------------------- the driver process


def serve() -> int:
    """The cluster's driver: the project's local session, its gateway on stdout, then commands
    from stdin (``cancel TAG``) until it closes."""
    from spark_mlops.config import build_settings
    from spark_mlops.spark import get_spark

    spark = get_spark(build_settings())
    sc = spark.sparkContext
    params = sc._gateway.gateway_parameters
    jvm = getattr(sc._gateway, "proc", None)  # the JVM pyspark launched (spark-submit execs java)
    jvm_pid = int(sc._jvm.java.lang.ProcessHandle.current().pid())
    print(json.dumps({"port": params.port, "secret": params.auth_token, "jvm_pid": jvm_pid,
                      "app_id": sc.applicationId}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "cancel" and argument:
            with contextlib.suppress(Exception):
                sc.cancelJobsWithTag(argument)
    spark.stop()
    if jvm is not None:  # the JVM exits when its stdin closes (PythonGatewayServer): wait for it here
        with contextlib.suppress(OSError, ValueError):
            jvm.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            jvm.wait(timeout=STOP_GRACE_S)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner stops the cluster, not a Ctrl-C
    sys.exit(serve())
