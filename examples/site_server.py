"""The local demo site: the static pages under `examples/site/` plus a few dynamic routes.

Used by `make run` (the demo) and by the test suite; nothing is fetched from the internet.

Dynamic routes:

- `POST /login` (form-encoded `username`, `password`): "Welcome, <username>" when the password is
  `hunter2-secret`, otherwise "Invalid password" with status 401.
- `POST /upload` (multipart, field `file`): "Received NAME (N bytes)".
- `GET /shop/export.csv?q=lamp&sort=price&in_stock=1`: the search results as a CSV attachment
  named `results.csv`, filtered and sorted exactly like the search page does it.
- `GET /slow?ms=N`: answers after N milliseconds.
- `GET /hang`: never answers; the connection stays open until the client leaves or the server
  stops. Other requests are not blocked (one thread per connection).

Run it by hand with `python -m examples.site_server --port 8080`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import html
import io
import json
import logging
import select
import socket
import socketserver
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PureWindowsPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

SITE_DIR = Path(__file__).resolve().parent / "site"
PRODUCTS_FILE = SITE_DIR / "shop" / "products.json"

LOGIN_PASSWORD = "hunter2-secret"
SORTS = ("relevance", "price", "name")
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_SLOW_MS = 120_000
_POLL_S = 0.1  # how often waiting handlers look at the stop flag and the client socket
_DRAIN_S = 1.0  # how long stop() lets in-flight requests finish before cutting them off


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    price: float
    in_stock: bool


@dataclass(frozen=True)
class FormPart:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def load_products(path: Path = PRODUCTS_FILE) -> list[Product]:
    """The catalogue shared by the search page (which fetches the same JSON) and the export."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [
        Product(
            id=str(item["id"]),
            name=str(item["name"]),
            category=str(item["category"]),
            price=float(item["price"]),
            in_stock=bool(item["in_stock"]),
        )
        for item in raw
    ]


def search_products(
    products: Sequence[Product], query: str, sort: str = "relevance", in_stock_only: bool = False
) -> list[Product]:
    """Filter and sort like the search page's script does (keep the two in step).

    Every whitespace-separated word of the query must occur in the name or category
    (case-insensitive). `price` sorts ascending (ties by name), `name` alphabetically, and
    `relevance` puts name matches before category-only matches, keeping catalogue order.
    """
    words = query.lower().split()

    def matches(product: Product) -> bool:
        haystack = f"{product.name} {product.category}".lower()
        return all(word in haystack for word in words)

    def relevance(product: Product) -> int:
        name = product.name.lower()
        return sum(2 if word in name else 1 for word in words)

    found = [(i, p) for i, p in enumerate(products) if matches(p)]
    if in_stock_only:
        found = [(i, p) for i, p in found if p.in_stock]
    if sort == "price":
        found.sort(key=lambda ip: (ip[1].price, ip[1].name.lower()))
    elif sort == "name":
        found.sort(key=lambda ip: (ip[1].name.lower(), ip[0]))
    else:
        found.sort(key=lambda ip: (-relevance(ip[1]), ip[0]))
    return [p for _, p in found]


def results_csv(products: Sequence[Product]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "price", "in_stock"])
    for p in products:
        writer.writerow([p.name, f"{p.price:.2f}", "yes" if p.in_stock else "no"])
    return out.getvalue()


def parse_multipart(body: bytes, content_type: str) -> list[FormPart]:
    """Parse a multipart/form-data body (the stdlib `cgi` module is deprecated)."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise ValueError("expected multipart/form-data with a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[FormPart] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, sep, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip()] = value.strip()
        name = headers.get_param("name", header="content-disposition")
        if name is None:
            continue
        parts.append(
            FormPart(
                name=collapse_rfc2231_value(name),
                filename=headers.get_filename(),
                content_type=headers.get_content_type(),
                data=data.removesuffix(b"\r\n"),
            )
        )
    return parts


def _html_page(title: str, heading: str, body_html: str) -> bytes:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Lumen Lamps — {html.escape(title)}</title>
  <link rel="stylesheet" href="/assets/style.css">
  <link rel="icon" href="data:,">
</head>
<body>
  <header class="site-header">
    <div class="inner">
      <a class="brand" href="/shop/index.html">
        <svg viewBox="0 0 32 32" aria-hidden="true"><circle cx="16" cy="13" r="9" fill="#e0a526"/>\
<rect x="12" y="21" width="8" height="6" rx="1.5" fill="#d8cfc2"/>\
<path d="M13 29h6" stroke="#d8cfc2" stroke-width="2" stroke-linecap="round"/></svg>
        Lumen Lamps
      </a>
      <nav class="site-nav" aria-label="Main">
        <a href="/shop/index.html">Home</a>
        <a href="/shop/search.html">Search</a>
        <a href="/login.html">Login</a>
        <a href="/upload.html">Upload</a>
        <a href="/shop/cart.html">Cart</a>
      </nav>
    </div>
  </header>
  <main>
    <h1 id="message">{html.escape(heading)}</h1>
    {body_html}
  </main>
</body>
</html>
""".encode()


class _Handler(SimpleHTTPRequestHandler):
    server: _Server
    timeout = 60  # idle keep-alive / preconnect sockets give up eventually

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        super().__init__(request, client_address, server, directory=str(SITE_DIR))

    # -- plumbing --------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", headers={"Location": location})

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad Content-Length")
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return None
        return self.rfile.read(length)

    def _client_gone(self) -> bool:
        """True when the client has closed its side of the connection."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/hang":
            self._hang()
        elif url.path == "/slow":
            self._slow(query)
        elif url.path == "/shop/export.csv":
            self._export(query)
        elif url.path in ("/login", "/upload"):
            self._redirect(url.path + ".html")
        else:
            super().do_GET()

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/login":
            self._login()
        elif path == "/upload":
            self._upload()
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    # -- routes ----------------------------------------------------------------------------

    def _hang(self) -> None:
        # Never answer; hold the connection until the client leaves or the server stops, then
        # close it without a response.
        self.close_connection = True
        while not self.server.stopping.wait(_POLL_S):
            if self._client_gone():
                log.debug("/hang: client went away")
                return
        log.debug("/hang: released by server stop")

    def _slow(self, query: dict[str, list[str]]) -> None:
        try:
            ms = int(query.get("ms", ["1000"])[0])
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST, "ms must be an integer")
            return
        if not 0 <= ms <= MAX_SLOW_MS:
            self.send_error(HTTPStatus.BAD_REQUEST, f"ms must be between 0 and {MAX_SLOW_MS}")
            return
        if self.server.stopping.wait(ms / 1000):
            self.close_connection = True
            return
        body = f'<p>This answer took <span id="waited">{ms}</span> ms.</p>'
        self._send(HTTPStatus.OK, _html_page("Slow", f"Waited {ms} ms", body))

    def _export(self, query: dict[str, list[str]]) -> None:
        q = query.get("q", [""])[0]
        sort = query.get("sort", ["relevance"])[0]
        in_stock = query.get("in_stock", ["0"])[0].lower() in ("1", "true", "on", "yes")
        found = search_products(
            load_products(), q, sort if sort in SORTS else "relevance", in_stock
        )
        self._send(
            HTTPStatus.OK,
            results_csv(found).encode(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="results.csv"'},
        )

    def _login(self) -> None:
        body = self._read_body()
        if body is None:
            return
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        username = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        if password == LOGIN_PASSWORD:
            page = _html_page(
                "Welcome",
                f"Welcome, {username}",
                '<p class="notice ok">You are signed in.</p>'
                '<p><a class="btn" href="/shop/index.html">Continue shopping</a></p>',
            )
            self._send(HTTPStatus.OK, page)
        else:
            page = _html_page(
                "Sign-in failed",
                "Invalid password",
                '<p class="notice error">That password is not right.</p>'
                '<p><a class="btn" href="/login.html">Try again</a></p>',
            )
            self._send(HTTPStatus.UNAUTHORIZED, page)

    def _upload(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            parts = parse_multipart(body, self.headers.get("Content-Type", ""))
        except ValueError as exc:
            self.send_error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        files = [p for p in parts if p.filename]
        upload = next((p for p in files if p.name == "file"), files[0] if files else None)
        if upload is None or upload.filename is None:
            page = _html_page(
                "Upload", "No file received", '<p><a href="/upload.html">Back</a></p>'
            )
            self._send(HTTPStatus.BAD_REQUEST, page)
            return
        name = PureWindowsPath(upload.filename).name  # some browsers send a full path
        size = len(upload.data)
        page = _html_page(
            "Upload",
            f"Received {name} ({size} bytes)",
            '<p><a class="btn secondary" href="/upload.html">Upload another</a></p>',
        )
        self._send(HTTPStatus.OK, page)


class _Server(ThreadingHTTPServer):
    """One daemon thread per connection, all tracked so that stop() can release them."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], stopping: threading.Event) -> None:
        self.stopping = stopping
        self._workers_lock = threading.Lock()
        self._workers: dict[threading.Thread, socket.socket] = {}
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() resolves the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        assert isinstance(request, socket.socket)
        worker = threading.Thread(
            target=self._work,
            args=(request, client_address),
            name=f"site-server-request-{client_address}",
            daemon=True,
        )
        with self._workers_lock:
            self._workers[worker] = request
        worker.start()

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._workers_lock:
                self._workers.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (browsers do that a lot) are not worth a traceback.
        log.debug("error while serving %s", client_address, exc_info=True)

    def drain(self, timeout: float) -> None:
        """Wait for in-flight requests, then cut off whatever is still connected."""
        deadline = time.monotonic() + timeout
        for worker in self._snapshot():
            worker.join(max(0.0, deadline - time.monotonic()))
        leftovers = self._snapshot()
        for worker in leftovers:
            with self._workers_lock:
                sock = self._workers.get(worker)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for worker in leftovers:
            worker.join(0.5)

    def _snapshot(self) -> list[threading.Thread]:
        with self._workers_lock:
            return list(self._workers)


class SiteServer:
    """The demo site on a background thread.

    >>> server = SiteServer().start()   # port 0 picks a free port
    >>> server.url                      # 'http://127.0.0.1:54321/'
    >>> server.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SiteServer:
        if self._httpd is not None:
            raise RuntimeError("the site server is already running")
        self._stopping.clear()
        httpd = _Server((self._host, self._port), self._stopping)
        self._port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_S},
            name="site-server",
            daemon=True,
        )
        self._httpd = httpd
        self._thread.start()
        log.debug("site server listening on %s", self.url)
        return self

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the site server is not running")
        return self._port

    @property
    def url(self) -> str:
        """The base URL with a trailing slash, e.g. `http://127.0.0.1:54321/`."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        """Stop serving, release /hang and /slow waiters and close every socket."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        self._stopping.set()
        httpd.shutdown()
        if thread is not None:
            thread.join()
        httpd.drain(_DRAIN_S)
        httpd.server_close()
        log.debug("site server stopped")

    def __enter__(self) -> SiteServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Glassbox demo site (Lumen Lamps).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080, 0 = any)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    server = SiteServer(args.host, args.port).start()
    print(
        f"Lumen Lamps demo site at {server.url} (shop: {server.url}shop/) — Ctrl-C to stop",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
