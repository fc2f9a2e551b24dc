"""The options of `POST /api/v1/runs` (timeout_s, proxy, extra_http_headers, webhook_url, title),
each observed at its effect against a real `glassbox serve`: the page's server saw the header,
the proxy saw the page requests, the receiver got the signed record, the run ended at the
request's limit. And `GET /runs/{id}/reproduce` recreates a run with the same inputs.

SQLite only: the options are columns like any other (tests/storage covers both backends).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import io
import json
import os
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import (
    Service,
    create_run,
    get_record,
    login_workflow,
    running_service,
    timeline,
    visit_workflow,
    wait_status,
    wait_until,
    waiting_workflow,
)
from tests.probe_site import ProbeSite

pytestmark = pytest.mark.parametrize("service", ["sqlite"], indirect=True)

WEBHOOK_SECRET = "whsec-options-test-0123456789"
PROXIED_HOST = "glassbox-proxy-test.invalid"
MASK = "********"


@pytest.fixture(scope="module")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """This module's own service: it signs webhooks."""
    with running_service(
        tmp_path_factory.mktemp("serve-options"),
        extra_env={"GLASSBOX_WEBHOOK_SECRET": WEBHOOK_SECRET},
    ) as service:
        yield service


@pytest.fixture(scope="module")
def probe() -> Iterator[ProbeSite]:
    with ProbeSite() as site:
        yield site


def echo_workflow(url: str, *, title: str = "Echo the headers") -> dict[str, Any]:
    """Opens the probe site's /echo (the request's headers, shown on the page) and extracts it."""
    return {
        "title": title,
        "url": url,
        "timeout_s": 60,
        "blocks": [
            {"label": "echo", "type": "action", "steps": [{"goto": "{{ url }}echo"}]},
            {
                "label": "headers",
                "type": "extract",
                "fields": {"headers": {"selector": "#headers", "first": True}},
            },
        ],
    }


def texts_of(client: httpx.Client, base_url: str, record: dict[str, Any]) -> dict[str, str]:
    """Everything Glassbox shows or stores about a run, as text: where a secret must not be."""
    run_id = record["id"]
    texts = {
        path: client.get(path).text
        for path in (
            f"/runs/{run_id}",
            f"/runs/{run_id}/timeline",
            f"/runs/{run_id}/reproduce",
            f"/runs?q={run_id}",
        )
    }
    for artifact in record["artifacts"]:
        if artifact["kind"] in ("har", "console", "html", "code", "trace"):
            content = httpx.get(base_url + artifact["url"], timeout=30).content
            texts[artifact["name"]] = content.decode("utf-8", "replace")
            if artifact["kind"] == "trace":
                texts[artifact["name"]] = _zip_text(content)
    return texts


def _zip_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(
            archive.read(name).decode("utf-8", "replace")
            for name in archive.namelist()
            if not name.endswith((".jpeg", ".jpg", ".png"))
        )


# --- timeout_s -----------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_timeout_s_of_the_request_ends_a_longer_run_timed_out_naming_the_limit(
    client: httpx.Client, site: SiteServer
) -> None:
    # The workflow allows 120 s and waits 110 s for a text that never comes; the request, 3 s.
    # A run that ignored the request's limit would still be running when this stops waiting
    # (the record is stored before the status changes: slow on a loaded machine).
    workflow = waiting_workflow(site, timeout_ms=110_000, title="Cut short by timeout_s")
    created = create_run(client, workflow, timeout_s=3)
    assert created["timeout_s"] == 3
    record = wait_status(client, created["id"], timeout=90)
    assert record["status"] == "timed_out", (record["status"], record["failure_reason"])
    assert "time limit of 3 s" in (record["failure_reason"] or ""), record["failure_reason"]
    assert record["timeout_s"] == 3
    # The record it had so far is kept.
    assert {"video", "trace"} <= {a["kind"] for a in record["artifacts"]}


# --- extra_http_headers --------------------------------------------------------------------------


def test_extra_http_headers_reach_the_site_and_secret_ones_are_masked(
    client: httpx.Client, base_url: str, probe: ProbeSite
) -> None:
    token = f"Bearer probe-{uuid.uuid4().hex}"
    headers = {"X-Glassbox-Probe": "visible-value-42", "Authorization": token}
    since = probe.mark()
    created = create_run(client, echo_workflow(probe.url), extra_http_headers=headers)
    record = wait_status(client, created["id"], timeout=60)
    assert record["status"] == "completed", record["failure_reason"]

    # The site saw both headers on the page request.
    echo = probe.wait_for("/echo", since=since)
    assert echo.headers["x-glassbox-probe"] == "visible-value-42"
    assert echo.headers["authorization"] == token
    shown = json.loads(record["extracted_information"]["headers"])
    assert shown["x-glassbox-probe"] == "visible-value-42"

    # The record shows the plain header and masks the secret one.
    for answer in (created, record):
        assert answer["extra_http_headers"] == {
            "X-Glassbox-Probe": "visible-value-42",
            "Authorization": MASK,
        }
    # The secret header is nowhere in clear: not in the API's answers, not in an artifact.
    texts = texts_of(client, base_url, record)
    secret = token.removeprefix("Bearer ")
    leaks = sorted(name for name, text in texts.items() if secret in text)
    assert not leaks, f"the Authorization header is shown in clear by {leaks}"


# --- proxy ---------------------------------------------------------------------------------------


@dataclass
class Proxied:
    target: str  # the request line's target: an absolute URI
    headers: dict[str, str]  # names in lower case
    status: int


class ForwardProxy:
    """A plain-HTTP forward proxy on loopback that asks for Basic credentials (407 first).

    It serves `http://glassbox-proxy-test.invalid/…` from the probe site: that name resolves
    nowhere else, so a page of that host that loads in the run came through this proxy. (The
    probe site's own 127.0.0.1 URL would go through it too — Playwright adds `<-loopback>` to
    Chromium's proxy bypass rules — but the `.invalid` name does not depend on that.)
    """

    def __init__(self, upstream_port: int, username: str, password: str) -> None:
        self.seen: list[Proxied] = []
        self.lock = threading.Lock()
        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                url = urlsplit(self.path)
                if headers.get("proxy-authorization") != expected:
                    status, body, extra = 407, b"", {"Proxy-Authenticate": 'Basic realm="probe"'}
                elif url.hostname != PROXIED_HOST:
                    status, body, extra = 502, b"unknown host", {}
                else:
                    upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                    forwarded = {
                        k: v
                        for k, v in self.headers.items()
                        if not k.lower().startswith("proxy-") and k.lower() != "connection"
                    }
                    forwarded["Via"] = "1.1 glassbox-test-proxy"
                    upstream.request(
                        "GET", url.path + (f"?{url.query}" if url.query else ""), headers=forwarded
                    )
                    answer = upstream.getresponse()
                    status, body = answer.status, answer.read()
                    extra = {"Content-Type": answer.getheader("Content-Type", "text/html")}
                    upstream.close()
                with proxy.lock:
                    proxy.seen.append(Proxied(self.path, headers, status))
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self) -> list[Proxied]:
        with self.lock:
            return list(self.seen)


def test_proxy_carries_the_page_requests_with_its_credentials(
    client: httpx.Client, base_url: str, probe: ProbeSite
) -> None:
    password = f"proxy-pass-{uuid.uuid4().hex[:12]}"
    since = probe.mark()
    with ForwardProxy(probe.port, "probe-user", password) as proxy:
        options = {"server": proxy.url, "username": "probe-user", "password": password}
        created = create_run(
            client,
            echo_workflow(f"http://{PROXIED_HOST}/", title="Through the proxy"),
            proxy=options,
        )
        record = wait_status(client, created["id"], timeout=60)
        seen = proxy.requests()
    assert record["status"] == "completed", record["failure_reason"]

    # The page request went through the proxy, with the run's credentials, and was served.
    served = [p for p in seen if p.status == 200]
    assert [p.target for p in served if urlsplit(p.target).path == "/echo"] == [
        f"http://{PROXIED_HOST}/echo"
    ], seen
    assert probe.wait_for("/echo", since=since).headers["via"] == "1.1 glassbox-test-proxy"
    shown = json.loads(record["extracted_information"]["headers"])
    assert shown["via"] == "1.1 glassbox-test-proxy"
    assert shown["host"] == PROXIED_HOST

    # The record names the proxy; its password is masked there and everywhere else.
    for answer in (created, record):
        assert answer["proxy"] == {"server": proxy.url, "username": "probe-user", "password": MASK}
    texts = texts_of(client, base_url, record)
    leaks = sorted(name for name, text in texts.items() if password in text)
    assert not leaks, f"the proxy password is shown in clear by {leaks}"


# --- webhook_url ---------------------------------------------------------------------------------


class Receiver:
    """Records every POST; answers 204."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/glassbox"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_url_of_the_request_gets_the_signed_record_of_the_finished_run(
    client: httpx.Client, site: SiteServer
) -> None:
    with Receiver() as receiver:
        created = create_run(
            client,
            login_workflow(site),
            parameters={"password": "hunter2-secret"},
            webhook_url=receiver.url,
        )
        assert created["webhook_url"] == receiver.url
        record = wait_status(client, created["id"], timeout=60)
        assert record["status"] == "completed", record["failure_reason"]
        wait_until(lambda: receiver.received, timeout=30, what="the webhook POST")
        time.sleep(0.5)  # a second delivery would be a bug: give it a moment to show
        received = list(receiver.received)
    assert len(received) == 1, received
    headers, body = received[0]
    timestamp = headers["x-glassbox-timestamp"]
    digest = hmac.new(
        WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["x-glassbox-signature"] == f"sha256={digest}"
    assert abs(int(timestamp) - time.time()) < 600
    sent = json.loads(body)
    assert sent["id"] == created["id"] and sent["status"] == "completed"
    assert sent["extracted_information"] == record["extracted_information"]
    assert sent["parameters"]["password"] == MASK
    assert b"hunter2-secret" not in body

    deliveries = client.get(f"/runs/{created['id']}/webhook-deliveries").json()
    assert [d["status_code"] for d in deliveries["items"]] == [204]


# --- title ---------------------------------------------------------------------------------------


def test_title_of_the_request_names_the_run_in_its_record_and_the_list(
    client: httpx.Client, site: SiteServer
) -> None:
    title = f"Options probe {uuid.uuid4().hex[:8]}"
    created = create_run(
        client, visit_workflow(site, title="The workflow's own title"), title=title
    )
    assert created["title"] == title
    record = wait_status(client, created["id"], timeout=60)
    assert record["title"] == title
    listed = client.get("/runs", params={"q": title}).json()["items"]
    assert [(r["id"], r["title"]) for r in listed] == [(created["id"], title)]


# --- reproduce -----------------------------------------------------------------------------------


def test_the_curl_snippet_recreates_the_run_with_the_same_inputs(
    client: httpx.Client, probe: ProbeSite
) -> None:
    """Every input of the original comes back in the recreated run: the parameters (the secret
    one from its environment variable), the title, the limit, the headers (the secret one from
    HEADER_AUTHORIZATION), the webhook."""
    secret = f"s3cret-{uuid.uuid4().hex[:8]}"
    token = f"Bearer tok-{uuid.uuid4().hex[:8]}"
    workflow = {
        "title": "Order by form",
        "url": probe.url,
        "timeout_s": 120,
        "parameters": {
            "lamp": {"type": "string", "default": "Desk Lamp"},
            "size": {"type": "string", "default": "Small"},
            "code": {"type": "string", "secret": True},
        },
        "blocks": [
            {
                "label": "order",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}form.html"},
                    {"fill": {"selector": "#q", "value": "{{ lamp }} {{ code }}"}},
                    {"select": {"selector": "#size", "label": "{{ size }}"}},
                    {"press": {"selector": "#q", "key": "Enter"}},
                    {"wait_for": {"selector": "#got-q"}},
                ],
            }
        ],
    }
    options = {
        "title": "Reproduced order",
        "timeout_s": 90,
        "extra_http_headers": {"X-Glassbox-Probe": "reproduce", "Authorization": token},
        "webhook_url": "http://127.0.0.1:9/never-answered",
    }
    since = probe.mark()
    original = create_run(
        client,
        workflow,
        parameters={"lamp": "Floor Lamp", "size": "Large lamp", "code": secret},
        **options,
    )
    original = wait_status(client, original["id"], timeout=60)
    assert original["status"] == "completed", original["failure_reason"]
    [first] = probe.hits("/submitted", since=since)

    snippets = client.get(f"/runs/{original['id']}/reproduce").json()
    assert snippets["secret_env"] == ["CODE", "HEADER_AUTHORIZATION"]
    assert secret not in json.dumps(snippets) and token not in json.dumps(snippets)
    env = {k: v for k, v in os.environ.items() if k != "GLASSBOX_API_KEY"}
    env.update({"CODE": secret, "HEADER_AUTHORIZATION": token})
    since = probe.mark()
    done = subprocess.run(
        ["bash", "-c", snippets["curl"]], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    recreated = json.loads(done.stdout)
    assert recreated.get("status") == "queued", done.stdout[:500]
    record = wait_status(client, recreated["id"], timeout=60)
    assert record["status"] == "completed", record["failure_reason"]

    # The page got the same values, the secret included (from CODE)…
    [again] = probe.hits("/submitted", since=since)
    assert again.query == first.query
    assert again.query["q"] == [f"Floor Lamp {secret}"] and again.query["size"] == ["l"]
    assert again.headers["x-glassbox-probe"] == "reproduce"
    assert again.headers["authorization"] == first.headers["authorization"] == token
    # … and the record the same inputs.
    for key in ("parameters", "title", "timeout_s", "extra_http_headers", "webhook_url", "proxy"):
        assert record[key] == original[key], key
    assert record["parameters"] == {"lamp": "Floor Lamp", "size": "Large lamp", "code": MASK}
    assert get_record(client, record["id"])["run_with"] == original["run_with"]
    assert len(timeline(client, record["id"])) == len(timeline(client, original["id"]))
