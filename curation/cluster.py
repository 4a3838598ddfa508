"""A throw-away Spark standalone cluster (one master, one worker) on 127.0.0.1.

Uses the Spark distribution inside the pyspark package, so cluster mode can be tried,
tested and benchmarked on one machine with nothing else installed:

    with LocalStandaloneCluster(cores=2) as cluster:
        subprocess.run(cluster.submit_command(app_file, app_args), env=cluster.env(), check=True)

Everything the daemons write (logs, pid files, executor work dirs) lives in a temporary
directory, ports are chosen free at start, and both daemons (and the executors the
worker launched) are stopped on exit, also when the body raised.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from curation.spark_session import JVM_OPTIONS

log = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """The local standalone cluster could not be started (or stopped) as asked."""


def spark_home() -> Path:
    """The Spark distribution shipped in the pyspark package (bin/, jars/, maybe sbin/)."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").exists():
        raise ClusterError(f"no bin/spark-class under {home}: the pyspark package is incomplete")
    return home


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def _each(daemons: list[_Daemon], action) -> list:
    """`action(daemon)` for every daemon at once, one thread each; their results in order.
    Every action finishes before the first error (if any) is raised."""
    with ThreadPoolExecutor(max_workers=max(1, len(daemons))) as pool:
        futures = [pool.submit(action, d) for d in daemons]
    return [f.result() for f in futures]


class _Daemon:
    """One Spark daemon, started with sbin/spark-daemon.sh or, without sbin/, bin/spark-class."""

    def __init__(self, cluster: LocalStandaloneCluster, cls: str, args: list[str],
                 instance: int = 1):
        self.cluster, self.cls, self.args, self.instance = cluster, cls, args, str(instance)
        self.name = cls.rsplit(".", 1)[-1].lower() + ("" if instance == 1 else f" {instance}")
        self.pid: int | None = None
        self._popen: subprocess.Popen | None = None
        self.log_file = cluster.root / "logs" / f"{self.name.replace(' ', '-')}.out"

    def start(self) -> None:
        home, env = self.cluster.spark_home, self.cluster.daemon_env()
        daemon_sh = home / "sbin" / "spark-daemon.sh"
        if daemon_sh.exists():
            res = subprocess.run(["bash", str(daemon_sh), "start", self.cls, self.instance,
                                  *self.args], env=env, capture_output=True, text=True, timeout=60)
            pid_files = list((self.cluster.root / "pids").glob(f"*{self.cls}-{self.instance}.pid"))
            if pid_files:
                self.pid = int(pid_files[0].read_text().strip())
            logs = sorted((self.cluster.root / "logs").glob(f"*{self.cls}-{self.instance}-*.out"))
            if logs:
                self.log_file = logs[-1]
            if res.returncode != 0 or "failed to launch" in res.stdout or not self.alive():
                raise ClusterError(f"could not start the Spark {self.name}: {res.stdout}{res.stderr}"
                                   f"\nlog {self.log_file}:\n{_tail(self.log_file)}")
        else:  # pyspark wheels without sbin/: run the class in the foreground of our own child
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "ab") as out:
                self._popen = subprocess.Popen(
                    [str(home / "bin" / "spark-class"), self.cls, *self.args], env=env,
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
            self.pid = self._popen.pid
        log.info("started Spark %s (pid %s), log %s", self.name, self.pid, self.log_file)

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            p = psutil.Process(self.pid)
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def processes(self) -> list[psutil.Process]:
        """The daemon and everything it launched (a worker's executor JVMs)."""
        if not self.alive():
            return []
        p = psutil.Process(self.pid)
        try:
            return [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return [p]

    def stop(self, timeout: float) -> list[str]:
        """Stop the daemon and its children; returns what had to be killed hard."""
        procs = self.processes()
        if not procs:
            return []
        daemon_sh = self.cluster.spark_home / "sbin" / "spark-daemon.sh"
        if self._popen is None and daemon_sh.exists():
            subprocess.run(["bash", str(daemon_sh), "stop", self.cls, self.instance],
                           env=self.cluster.daemon_env(), capture_output=True, timeout=60)
        else:
            procs[0].terminate()
        _, still = psutil.wait_procs(procs, timeout=timeout)
        killed = []
        for p in still:  # only processes this cluster started
            try:
                killed.append(f"{p.pid} ({' '.join(p.cmdline()[:2])})")
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(still, timeout=10)
        if self._popen is not None:
            self._popen.wait(timeout=10)
        return killed


class LocalStandaloneCluster:
    """Spark standalone master + `workers` workers on 127.0.0.1, as a context manager.

    The `cores` are split evenly over the workers (each with its own work directory,
    `work/worker-<i>`), so with two workers a job's executors are two JVMs and its
    shuffles really cross executors.

    `master_url` is what to give `spark-submit --master`; `env()` is the environment for
    spark-submit (same Spark, PYSPARK_PYTHON = `python`, local IP pinned to 127.0.0.1).

    Every JVM of this one-machine cluster runs with a local job's flags (`JVM_OPTIONS`:
    C1 only, the parallel collector) unless told otherwise: the daemons
    (`SPARK_DAEMON_JAVA_OPTS`), the submitted driver (`spark.driver.extraJavaOptions`) and,
    through the job's own settings, its executors. On two cores C2's compiler threads
    compete with the job: the cluster started in 7.2-7.9 s instead of 13.5-13.8 s, and a
    small dedup job took a median 67 s instead of 73 s (benchmarks/RESULTS.md).
    """

    def __init__(self, cores: int = 2, memory: str = "2g", python: str | None = None,
                 start_timeout: float = 120.0, stop_timeout: float = 30.0,
                 workdir: str | os.PathLike | None = None, keep_workdir: bool = False,
                 workers: int = 1):
        if cores < 1:
            raise ValueError(f"cores must be >= 1, got {cores}")
        if workers < 1 or cores % workers:
            raise ValueError(f"cores ({cores}) must split evenly over workers ({workers})")
        self.cores, self.memory, self.workers = cores, memory, workers
        self.python = python or os.environ.get("PYSPARK_PYTHON") or sys.executable
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self._workdir, self.keep_workdir = workdir, keep_workdir
        self.spark_home = spark_home()
        self.root: Path = Path()
        self.port = self.ui_port = 0
        self._daemons: list[_Daemon] = []
        self._own_root = False

    # -- addresses and environments ---------------------------------------------------
    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    @property
    def master_ui_url(self) -> str:
        return f"http://{HOST}:{self.ui_port}"

    @property
    def spark_submit(self) -> Path:
        return self.spark_home / "bin" / "spark-submit"

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               # SPARK_MASTER makes spark-daemon.sh rsync; the others would redirect the daemons
               if k not in ("SPARK_MASTER", "SPARK_NO_DAEMONIZE", "SPARK_CONF_DIR", "SPARK_HOME")}
        env.update(SPARK_HOME=str(self.spark_home), SPARK_LOCAL_IP=HOST,
                   SPARK_CONF_DIR=str(self.root / "conf"), PYSPARK_PYTHON=self.python)
        return env

    def daemon_env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(SPARK_LOG_DIR=str(self.root / "logs"), SPARK_PID_DIR=str(self.root / "pids"),
                   SPARK_WORKER_DIR=str(self.root / "work"), SPARK_IDENT_STRING="sharpen",
                   SPARK_DAEMON_MEMORY=env.get("SPARK_DAEMON_MEMORY", "512m"),
                   SPARK_DAEMON_JAVA_OPTS=env.get("SPARK_DAEMON_JAVA_OPTS", JVM_OPTIONS),
                   SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false")
        return env

    def env(self) -> dict[str, str]:
        """Environment for `spark-submit` against this cluster."""
        return self._base_env()

    def submit_command(self, app: str | os.PathLike, app_args: list[str],
                       conf: dict[str, str] | None = None, driver_memory: str = "2g",
                       executor_memory: str = "1g") -> list[str]:
        """argv for `spark-submit` of a Python application file to this cluster."""
        cmd = [str(self.spark_submit), "--master", self.master_url, "--deploy-mode", "client",
               "--driver-memory", driver_memory, "--executor-memory", executor_memory,
               "--total-executor-cores", str(self.cores)]
        merged = {"spark.pyspark.python": self.python, "spark.pyspark.driver.python": self.python,
                  "spark.driver.extraJavaOptions": JVM_OPTIONS, "spark.driver.host": HOST,
                  "spark.driver.bindAddress": HOST, **(conf or {})}
        for key, value in merged.items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, str(app), *app_args]

    # -- life cycle ---------------------------------------------------------------------
    def state(self) -> dict:
        """The master's JSON status (workers, applications)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost only
        with opener.open(f"{self.master_ui_url}/json/", timeout=5) as r:
            return json.loads(r.read().decode())

    def _wait_for_worker(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = "master web UI not answering"
        while time.monotonic() < deadline:
            for d in self._daemons:
                if not d.alive():
                    raise ClusterError(f"the Spark {d.name} exited while starting; log "
                                       f"{d.log_file}:\n{_tail(d.log_file)}")
            try:
                st = self.state()
                alive = [w for w in st.get("workers", []) if w.get("state") == "ALIVE"]
                if len(alive) >= self.workers and sum(
                        int(w.get("cores", 0)) for w in alive) >= self.cores:
                    log.info("standalone cluster up: %s, %d worker(s), %d cores", self.master_url,
                             len(alive), self.cores)
                    return
                last = f"master answers but has {len(alive)} alive worker(s)"
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = f"master web UI not answering ({e})"
            time.sleep(0.5)
        raise ClusterError(
            f"no worker registered with {self.master_url} within {self.start_timeout:.0f}s "
            f"({last}); master log:\n{_tail(self._daemons[0].log_file)}")

    def start(self) -> LocalStandaloneCluster:
        if self._workdir is None:
            self.root = Path(tempfile.mkdtemp(prefix="sharpen-spark-"))
            self._own_root = True
        else:
            self.root = Path(self._workdir).resolve()
        for sub in ("conf", "logs", "pids", "work"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.port, self.ui_port = free_port(), free_port()
        try:
            master = _Daemon(self, MASTER_CLASS, ["--host", HOST, "--port", str(self.port),
                                                  "--webui-port", str(self.ui_port)])
            self._daemons.append(master)
            master.start()
            workers = []
            for i in range(1, self.workers + 1):
                work = self.root / "work" / f"worker-{i}"
                work.mkdir(parents=True, exist_ok=True)
                workers.append(_Daemon(self, WORKER_CLASS, [
                    self.master_url, "--cores", str(self.cores // self.workers), "--memory",
                    self.memory, "--host", HOST, "--webui-port", str(free_port()),
                    "--work-dir", str(work)], instance=i))
            self._daemons += workers
            # side by side: spark-daemon.sh waits ~2.5 s for each JVM it launches
            _each(workers, lambda d: d.start())
            self._wait_for_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster (daemons and executors) as listed now; a child
        that has just exited shows (a zombie) until its daemon reaps it."""
        return [p for d in self._daemons for p in d.processes()]

    def stop(self) -> None:
        """Stop the worker (and its executors), then the master; idempotent."""
        killed: list[str] = []
        if self._daemons:  # the workers side by side (each stops its executors), then the master
            for found in _each(self._daemons[1:], lambda d: d.stop(self.stop_timeout)):
                killed += found
            killed += self._daemons[0].stop(self.stop_timeout)
        self._daemons = []
        if killed:
            log.warning("killed Spark processes that did not stop in %.0fs: %s",
                        self.stop_timeout, ", ".join(killed))
        if self._own_root and not self.keep_workdir:
            shutil.rmtree(self.root, ignore_errors=True)
            self._own_root = False

    def __enter__(self) -> LocalStandaloneCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
