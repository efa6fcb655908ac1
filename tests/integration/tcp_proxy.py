"""A TCP proxy in front of a real server, for cutting a process off from it in tests.

`refuse()` is a server that went away: open connections are reset, new ones
refused. `stall()` is a server that stopped answering (frozen, or behind a
network that drops everything): connections stay open and nothing moves either
way. `restore()` brings the path back. The server itself is never touched, so
its data stays.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from typing import Self

from demo.embedded import free_port

_CHUNK = 65536


class TcpProxy:
    """Listens on 127.0.0.1:`port` and relays every connection to `target`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self._moving = threading.Event()
        self._moving.set()
        self._closed = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def start(self) -> Self:
        """Accept and relay."""
        self._listen()
        self._thread.start()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.setblocking(False)
        with self._lock:
            self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._poke()

    def _poke(self) -> None:
        self._wakeup_w.send(b"x")

    def refuse(self) -> None:
        """The server is gone: reset every connection and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        if listener is not None:
            self._selector.unregister(listener)
            listener.close()
        for pair in pairs:
            self._drop(pair, reset=True)
        self._poke()

    def stall(self) -> None:
        """The server stops answering: connections stay open, nothing moves either way."""
        self._moving.clear()
        self._poke()

    def restore(self) -> None:
        """Back to normal: relay again, and accept new connections."""
        if self._listener is None:
            self._listen()
        self._moving.set()
        self._poke()

    def stop(self) -> None:
        """Close everything."""
        self.refuse()
        self._closed.set()
        self._poke()
        self._thread.join(5)
        self._selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()

    def _drop(self, pair: tuple[socket.socket, socket.socket], *, reset: bool) -> None:
        for sock in pair:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            if reset:  # RST, as a dead server's host would answer
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            for key, _ in self._selector.select(timeout=0.5):
                if key.fileobj is self._wakeup_r:
                    self._wakeup_r.recv(4096)
                elif key.data == "accept":
                    self._accept(key.fileobj)  # type: ignore[arg-type]
                elif self._moving.is_set():
                    self._relay(key.fileobj, key.data)  # type: ignore[arg-type]
            self._watch_reads()

    def _watch_reads(self) -> None:
        """While stalled, stop watching connections (their data waits in the kernel); watch them again after."""
        with self._lock:
            pairs = list(self._pairs)
        for client, upstream in pairs:
            for sock, peer in ((client, upstream), (upstream, client)):
                if sock.fileno() < 0:
                    continue
                registered = _registered(self._selector, sock)
                if self._moving.is_set() and not registered:
                    self._selector.register(sock, selectors.EVENT_READ, (peer, (client, upstream)))
                elif not self._moving.is_set() and registered:
                    self._selector.unregister(sock)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._pairs.append((client, upstream))

    def _relay(self, sock: socket.socket, data: tuple[socket.socket, tuple[socket.socket, socket.socket]]) -> None:
        peer, pair = data
        try:
            chunk = sock.recv(_CHUNK)
            if chunk:
                peer.sendall(chunk)
                return
        except OSError:
            pass
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        self._drop(pair, reset=False)


def _registered(selector: selectors.BaseSelector, sock: socket.socket) -> bool:
    try:
        selector.get_key(sock)
        return True
    except (KeyError, ValueError):
        return False
