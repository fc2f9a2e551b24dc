"""Webhook targets (issue 9, point 9): http(s) only, no credentials in the URL, no CR/LF, never
a link-local or cloud-metadata address (also when a name resolves to one at delivery), private
addresses only while GLASSBOX_WEBHOOK_DENY_PRIVATE is off. Real `glassbox serve`, real HTTP."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest

from examples.site_server import SiteServer
from tests.api.conftest import (
    Service,
    error_fields,
    running_service,
    visit_workflow,
    wait_status,
    wait_until,
)

REFUSED_ALWAYS = [
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http:///no-host",
    "http://user:p4ssw0rd@example.com/hook",
    "https://token@example.com/hook",
    "http://example.com/hook\r\nX-Injected: 1",
    "http://example.com/ho\nok",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1:8080/",
    "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://2852039166/",  # 169.254.169.254 as one decimal number
    "http://0251.0376.0251.0376/",  # and in octal
    "http://0.0.0.0:8000/",
]
PRIVATE = ["http://10.1.2.3/hook", "http://192.168.0.10:9000/hook", "http://[fd12::1]/hook"]


class _Hooks(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hooks() -> Iterator[tuple[int, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Hooks.received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Private targets denied; one worker, so that runs end and their webhooks go out."""
    with running_service(
        tmp_path_factory.mktemp("serve-deny-private"),
        extra_env={"GLASSBOX_WEBHOOK_DENY_PRIVATE": "true", "GLASSBOX_WEBHOOK_ATTEMPTS": "1"},
    ) as service:
        yield service


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The default (private targets allowed), API only: nothing here needs a run to end."""
    with running_service(tmp_path_factory.mktemp("serve-default"), workers=0) as service:
        yield service


def _post(service: Service, site: SiteServer, webhook_url: str) -> httpx.Response:
    with httpx.Client(base_url=service.api, timeout=30) as client:
        return client.post(
            "/runs", json={"workflow": visit_workflow(site), "webhook_url": webhook_url}
        )


@pytest.mark.parametrize("url", REFUSED_ALWAYS)
def test_refused_targets_are_a_422_naming_webhook_url(
    open_service: Service, site: SiteServer, url: str
) -> None:
    answer = _post(open_service, site, url)
    assert error_fields(answer) == ["webhook_url"]
    assert "p4ssw0rd" not in answer.text


@pytest.mark.parametrize("url", [*PRIVATE, "http://127.0.0.1:1/hook", "https://example.com/x"])
def test_private_and_public_targets_are_allowed_by_default(
    open_service: Service, site: SiteServer, url: str
) -> None:
    answer = _post(open_service, site, url)
    assert answer.status_code == 201, answer.text
    assert answer.json()["webhook_url"] == url


@pytest.mark.parametrize("url", [*PRIVATE, "http://127.0.0.1:8000/hook", "http://[::1]/hook"])
def test_private_targets_are_refused_when_denied(
    strict_service: Service, site: SiteServer, url: str
) -> None:
    assert error_fields(_post(strict_service, site, url)) == ["webhook_url"]


def test_a_name_resolving_to_a_denied_address_is_refused_at_delivery(
    strict_service: Service, site: SiteServer, hooks: tuple[int, list[str]]
) -> None:
    port, received = hooks
    before = len(received)
    # `localhost` is a name: accepted when the run is created, refused once resolved.
    answer = _post(strict_service, site, f"http://localhost:{port}/resolved")
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["id"]
    with httpx.Client(base_url=strict_service.api, timeout=30) as client:
        assert wait_status(client, run_id)["status"] == "completed"

        def attempts() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = client.get(f"/runs/{run_id}/webhook-deliveries").json()[
                "items"
            ]
            return items

        made = wait_until(attempts, timeout=30, what="a delivery attempt")
        assert made[0]["status_code"] is None
        assert "refused target" in made[0]["error"] and "127.0.0.1" in made[0]["error"]
        # A manual redelivery is refused the same way.
        again = client.post(f"/runs/{run_id}/webhook-deliveries")
        assert "refused target" in str(again.json())
    assert len(received) == before  # the receiver never saw a request
