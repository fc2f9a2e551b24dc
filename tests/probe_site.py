"""A small site that remembers every request that reached it.

The tests that check a run option or a step verb by its *effect* ask this server what it saw
(the headers of a request, the fields of a submitted form, the bytes of an uploaded file, the
scroll positions the page reported), independently of anything Glassbox records.

Pages:

- `GET /echo`: a page showing the request's headers as JSON in `<pre id="headers">`.
- `GET /form.html`: a form (`#q`, a `#size` select whose options' values differ from their
  labels, a `#gift` checkbox, a submit button) that submits to `GET /submitted`, which shows
  the fields it received in `#got-q`, `#got-size`, `#got-gift`.
- `GET /long.html`: a tall page that reports `window.scrollY` to `POST /event` on every scroll
  and shows it in `#scroll-y`; `#bottom` is its last element, `#bottom-seen` says "yes" once the
  page has seen it in view.
- `GET /upload.html`: a file input `#file` and an Upload button posting to `POST /upload`, which
  answers "Received NAME (N bytes)" in `#received` and the file's SHA-256 in `#sha256`.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from examples.site_server import FormPart, parse_multipart

FORM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Order form</title>
<link rel="icon" href="data:,"></head>
<body>
<h1>Order a lamp</h1>
<form id="order" action="/submitted" method="get">
  <label for="q">Lamp</label> <input id="q" name="q" type="text">
  <label for="size">Size</label>
  <select id="size" name="size">
    <option value="s" selected>Small</option>
    <!-- A value equal to another option's label: choosing by label must not pick this one. -->
    <option value="Large lamp">Tiny</option>
    <option value="l">Large lamp</option>
  </select>
  <label><input id="gift" name="gift" type="checkbox" value="yes"> Gift wrap</label>
  <button type="submit">Order</button>
</form>
</body></html>
"""

LONG_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A long page</title>
<link rel="icon" href="data:,">
<style>
  #scroll-y, #bottom-seen { position: fixed; top: 0; background: #ffd; padding: 4px; }
  #scroll-y { right: 0; }
  #bottom-seen { right: 80px; }
  .chapter { height: 900px; border-top: 1px solid #ccc; }
</style></head>
<body>
<div id="scroll-y">0</div> <div id="bottom-seen">no</div>
<h1>A long page</h1>
<div class="chapter">Chapter 1</div><div class="chapter">Chapter 2</div>
<div class="chapter">Chapter 3</div><div class="chapter">Chapter 4</div>
<div class="chapter">Chapter 5</div><div class="chapter">Chapter 6</div>
<div id="bottom">The bottom of the page</div>
<script>
  let last = null;
  function report() {
    const y = Math.round(window.scrollY);
    document.getElementById("scroll-y").textContent = String(y);
    if (y === last) return;
    last = y;
    const box = document.getElementById("bottom").getBoundingClientRect();
    const bottomInView = box.top < window.innerHeight && box.bottom > 0;
    if (bottomInView) document.getElementById("bottom-seen").textContent = "yes";
    fetch("/event", {method: "POST", keepalive: true,
      body: JSON.stringify({type: "scroll", y: y, bottom_in_view: bottomInView})});
  }
  window.addEventListener("scroll", report);
</script>
</body></html>
"""

UPLOAD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Upload</title>
<link rel="icon" href="data:,"></head>
<body>
<h1>Send a file</h1>
<form method="post" action="/upload" enctype="multipart/form-data">
  <label for="file">File</label> <input id="file" name="file" type="file">
  <button type="submit">Upload</button>
</form>
</body></html>
"""


def _page(title: str, body: str) -> bytes:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{html.escape(title)}</title><link rel="icon" href="data:,"></head>'
        f"<body>{body}</body></html>"
    ).encode()


@dataclass
class Hit:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes
    files: list[FormPart] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _hit(self, body: bytes = b"", files: list[FormPart] | None = None) -> Hit:
        url = urlsplit(self.path)
        hit = Hit(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            files=files or [],
        )
        with self.server.lock:
            self.server.hits.append(hit)
        return hit

    def _send(self, body: bytes, status: int = 200, content_type: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        hit = self._hit()
        if hit.path == "/echo":
            shown = json.dumps(hit.headers, indent=1, sort_keys=True)
            self._send(_page("Echo", f'<pre id="headers">{html.escape(shown)}</pre>'))
        elif hit.path == "/form.html":
            self._send(FORM_PAGE.encode())
        elif hit.path == "/submitted":
            fields = "".join(
                f'<dt>{name}</dt><dd id="got-{name}">'
                f"{html.escape(hit.query.get(name, ['(none)'])[0])}</dd>"
                for name in ("q", "size", "gift")
            )
            self._send(_page("Submitted", f"<h1>Order received</h1><dl>{fields}</dl>"))
        elif hit.path == "/long.html":
            self._send(LONG_PAGE.encode())
        elif hit.path == "/upload.html":
            self._send(UPLOAD_PAGE.encode())
        else:
            self._send(_page("Not found", "<h1>Not found</h1>"), HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        if path == "/event":
            self._hit(body)
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()
        elif path == "/upload":
            files = [p for p in parse_multipart(body, self.headers["Content-Type"]) if p.filename]
            self._hit(body, files)
            if not files:
                self._send(_page("Upload", "<h1>No file received</h1>"), HTTPStatus.BAD_REQUEST)
                return
            got = files[0]
            self._send(
                _page(
                    "Upload",
                    f'<h1 id="received">Received {html.escape(got.filename or "")} '
                    f"({len(got.data)} bytes)</h1>"
                    f'<p id="sha256">{hashlib.sha256(got.data).hexdigest()}</p>',
                )
            )
        else:
            self._hit(body)
            self._send(_page("Not found", "<h1>Not found</h1>"), HTTPStatus.NOT_FOUND)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class ProbeSite:
    """The site on a background thread: `with ProbeSite() as probe: probe.url …`."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ProbeSite:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The root URL with a trailing slash."""
        return f"http://127.0.0.1:{self.port}/"

    def mark(self) -> int:
        """A position in the log of requests: `hits(since=…)` lists what came after it."""
        with self._server.lock:
            return len(self._server.hits)

    def hits(self, path: str | None = None, *, since: int = 0) -> list[Hit]:
        with self._server.lock:
            found = self._server.hits[since:]
        return [h for h in found if path is None or h.path == path]

    def wait_for(
        self, path: str, check: Callable[[Hit], bool] = lambda _: True, *, since: int = 0
    ) -> Hit:
        """The first request to `path` passing `check`, waiting up to 10 s for one (a page's
        last report may arrive just after the step that caused it)."""
        deadline = time.monotonic() + 10
        while True:
            found = [h for h in self.hits(path, since=since) if check(h)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = [(h.method, h.path, h.body[:200]) for h in self.hits(since=since)]
                raise AssertionError(f"no request to {path} passed the check; seen: {seen}")
            time.sleep(0.05)
