"""A TCP proxy a test controls, between Glassbox and a server (PostgreSQL, S3, …): `cut()`
resets every connection through it, `refuse()` also closes its port so new connections are
refused (the server looks down), `restore()` listens again. Connection-level faults without
touching the server, for any protocol.

    with TcpProxy(upstream_port) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        ...
        proxy.refuse()        # outage starts
        proxy.restore()       # and ends
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

BUFFER = 65536


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a crashed peer or a dropped network does, not a polite FIN.
    A close() alone would wait for the thread blocked in recv() on the socket (Linux keeps the
    socket open, and piping, until that call returns): shutting down reading wakes it first."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.connections = 0  # accepted since the start, for tests that want to see traffic

    # --- control ---------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def cut(self) -> None:
        """Resets every open connection; new ones are still accepted."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for client, server in pairs:
            _reset(client)
            _reset(server)

    def refuse(self) -> None:
        """Cuts every connection and stops listening: connecting gets 'connection refused'."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        self.cut()

    def restore(self) -> None:
        """Listens again on the same port."""
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.refuse()

    @property
    def refusing(self) -> bool:
        return self._listener is None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name=f"proxy :{self.port}", daemon=True
        )
        self._acceptor.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by refuse()
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)  # the server itself is down: so are we
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.add((client, server))
                self.connections += 1
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pipe, args=(source, target, (client, server)), daemon=True
                ).start()

    def _pipe(
        self,
        source: socket.socket,
        target: socket.socket,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := source.recv(BUFFER):
                target.sendall(data)
        except OSError:
            pass
        with self._lock:
            known = pair in self._pairs
            self._pairs.discard(pair)
        if known:  # the other side closed: pass it on
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
