"""Pages an attacker writes, served on their own loopback port (an origin of their own).

- `GET /hostile.html`: a page a run visits. Its title, text and console carry script, and its
  script — were it ever run on Glassbox's origin — shows a dialog, loads `/api/v1/xss-marker`,
  and archives every run it can list. Links download `evil.html` and `evil.svg` (attachments)
  with the same script.
- `GET /attacker.html?target=BASE&run=ID`: a second origin attacking a Glassbox service at
  BASE: `fetch(…, {mode: "no-cors", method: "POST"})` to cancel, rerun and archive run ID (with
  and without a text body), then a plain form POST; it reports `done` in its title.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

PAYLOAD = """
try { alert("xss from a recorded page"); } catch (e) {}
new Image().src = "/api/v1/xss-marker?from=" + encodeURIComponent(location.href);
fetch("/api/v1/runs?limit=100").then((r) => r.json()).then((page) => {
  for (const run of page.items || []) {
    fetch("/api/v1/runs/" + run.id + "/archive", {method: "POST"});
  }
}).catch(() => {});
"""

HOSTILE_PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8">
<title>&lt;script&gt;alert("title")&lt;/script&gt; Hostile</title>
<link rel="icon" href="data:,">
<script>{PAYLOAD}</script>
</head><body>
<h1 id="heading">Nothing to see <img src=x onerror="alert('img')"></h1>
<p>&lt;script&gt;alert("text")&lt;/script&gt;</p>
<script>console.log('<script>alert("console")</' + 'script>');</script>
<a id="html" href="/evil.html">Export page</a>
<a id="svg" href="/evil.svg">Export picture</a>
</body></html>
"""

EVIL_HTML = f"""<!doctype html><html><head><title>evil</title></head>
<body><h1>evil download</h1><script>{PAYLOAD}</script></body></html>
"""

EVIL_SVG = f"""<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">
<script>{PAYLOAD}</script><rect width="10" height="10"/></svg>
"""

ATTACKER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>working</title><link rel="icon" href="data:,"></head>
<body>
<form id="form" method="POST" target="sink" enctype="text/plain"></form>
<iframe name="sink"></iframe>
<script>
const params = new URLSearchParams(location.search);
const base = params.get("target");
const run = params.get("run");
const api = base + "/api/v1/runs/" + run;
async function attack() {
  for (const action of ["cancel", "rerun", "archive"]) {
    for (const body of [undefined, "{}"]) {
      try {
        await fetch(api + "/" + action, {mode: "no-cors", method: "POST", body,
          headers: body ? {"Content-Type": "text/plain"} : {}});
      } catch (e) {}
    }
  }
  try {
    await fetch(base + "/api/v1/runs", {mode: "no-cors", method: "POST",
      body: JSON.stringify({workflow: {goal: "x"}}), headers: {"Content-Type": "text/plain"}});
  } catch (e) {}
  const form = document.getElementById("form");
  for (const action of ["cancel", "archive"]) {
    form.action = api + "/" + action;
    form.submit();
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  document.title = "done";
}
attack();
</script>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        pages: dict[str, tuple[str, str, str | None]] = {
            "/hostile.html": (HOSTILE_PAGE, "text/html; charset=utf-8", None),
            "/attacker.html": (ATTACKER_PAGE, "text/html; charset=utf-8", None),
            "/evil.html": (EVIL_HTML, "text/html; charset=utf-8", "evil.html"),
            "/evil.svg": (EVIL_SVG, "image/svg+xml", "evil.svg"),
        }
        if path not in pages:
            self.send_error(404)
            return
        text, content_type, attachment = pages[path]
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if attachment:
            self.send_header("Content-Disposition", f'attachment; filename="{attachment}"')
        self.end_headers()
        self.wfile.write(body)


class HostileSite:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> HostileSite:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def attacker_url(self, target: str, run_id: str) -> str:
        return f"{self.url}attacker.html?{urlencode({'target': target, 'run': run_id})}"
