"""Every route of the real application, against a real `glassbox serve` that has an API key.

The route table is read from the app that `glassbox serve` builds (`api.app.create_app`), and
each route is requested over HTTP with no key, with a wrong key and with the right key, real ids
(a finished run with artifacts, a saved workflow, one of the run's artifacts) in its path.
Every route must be classified below:

- `PROTECTED`: 401 (WebSocket: the handshake refused) without a key and with a wrong one;
  served with the right one.
- `PUBLIC`: served to anyone, with the reason it may be: it carries no data.

A route this table does not know fails the test, so a new route cannot ship unguarded; an entry
naming a route that no longer exists fails it too, so the table stays the app's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from api.app import create_app
from api.auth import UNAUTHORIZED_DETAIL
from examples.site_server import SiteServer
from services.settings import Settings
from tests.api.conftest import (
    Service,
    create_key,
    create_run,
    running_service,
    visit_workflow,
    wait_status,
    wait_until,
)

Key = tuple[str, str]  # (HTTP method, "WS" or "MOUNT"; the path as declared)

PROTECTED: frozenset[Key] = frozenset(
    {
        ("GET", "/api/v1/health"),
        ("POST", "/api/v1/runs"),
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/runs/{run_id}"),
        ("DELETE", "/api/v1/runs/{run_id}"),
        ("GET", "/api/v1/runs/{run_id}/timeline"),
        ("GET", "/api/v1/runs/{run_id}/activity"),
        ("GET", "/api/v1/runs/{run_id}/follow-ups"),
        ("GET", "/api/v1/runs/{run_id}/artifacts"),
        ("POST", "/api/v1/runs/{run_id}/cancel"),
        ("POST", "/api/v1/runs/{run_id}/rerun"),
        ("POST", "/api/v1/runs/{run_id}/duplicate"),
        ("POST", "/api/v1/runs/{run_id}/continue"),
        ("POST", "/api/v1/runs/{run_id}/archive"),
        ("POST", "/api/v1/runs/{run_id}/unarchive"),
        ("POST", "/api/v1/runs/{run_id}/read"),
        ("POST", "/api/v1/runs/{run_id}/unread"),
        ("GET", "/api/v1/runs/{run_id}/code"),
        ("GET", "/api/v1/runs/{run_id}/reproduce"),
        ("GET", "/api/v1/runs/{run_id}/events"),
        ("WS", "/api/v1/runs/{run_id}/live"),
        ("GET", "/api/v1/runs/{run_id}/webhook-deliveries"),
        ("POST", "/api/v1/runs/{run_id}/webhook-deliveries"),
        ("GET", "/api/v1/artifacts/{artifact_id}"),
        ("GET", "/api/v1/artifacts/{artifact_id}/content"),
        ("POST", "/api/v1/workflows"),
        ("GET", "/api/v1/workflows"),
        ("GET", "/api/v1/workflows/{workflow_id}"),
        ("PUT", "/api/v1/workflows/{workflow_id}"),
        ("DELETE", "/api/v1/workflows/{workflow_id}"),
        ("GET", "/api/v1/workflows/{workflow_id}/cache"),
        ("GET", "/api/v1/workflows/{workflow_id}/cache/{version_id}"),
        ("POST", "/api/v1/workflows/{workflow_id}/cache/{version_id}/pin"),
        ("POST", "/api/v1/workflows/{workflow_id}/cache/{version_id}/unpin"),
        ("DELETE", "/api/v1/workflows/{workflow_id}/cache/{version_id}"),
        ("POST", "/api/v1/schedules"),
        ("GET", "/api/v1/schedules"),
        ("GET", "/api/v1/schedules/{schedule_id}"),
        ("PATCH", "/api/v1/schedules/{schedule_id}"),
        ("DELETE", "/api/v1/schedules/{schedule_id}"),
        ("POST", "/api/v1/workflows/{workflow_id}/schedules"),
        ("GET", "/api/v1/workflows/{workflow_id}/schedules"),
        ("POST", "/api/v1/workflows/{workflow_id}/triggers"),
        ("GET", "/api/v1/workflows/{workflow_id}/triggers"),
        ("GET", "/api/v1/triggers"),
        ("GET", "/api/v1/triggers/{trigger_id}"),
        ("DELETE", "/api/v1/triggers/{trigger_id}"),
        ("POST", "/api/v1/uploads"),
        ("GET", "/api/v1/uploads/{upload_id}"),
    }
)

# Routes authenticated by a token of their own instead of API keys: without it (whatever API key
# comes along, even the right one) they answer 401 and do nothing.
TOKEN: dict[Key, str] = {
    ("POST", "/api/v1/hooks/{trigger_id}"): "a trigger URL: X-Glassbox-Token, the trigger's own",
}

_SHELL = "an HTML shell, the same for everyone; its JavaScript calls /api/v1 with the key"
PUBLIC: dict[Key, str] = {
    ("GET", "/openapi.json"): "the API's description (shapes, no records); compose's healthcheck",
    ("HEAD", "/openapi.json"): "the API's description (shapes, no records); compose's healthcheck",
    ("GET", "/api/v1/schemas/workflow.json"): "the workflow format's JSON Schema (shapes, no "
    "records), for editors and client generators",
    ("GET", "/docs"): "Swagger UI's page; it reads /openapi.json and calls the API with the key",
    ("MOUNT", "/static/swagger"): "Swagger UI's JavaScript and CSS (swagger-ui-bundle)",
    ("GET", "/"): "a redirect to /runs",
    ("GET", "/workflows"): _SHELL,
    ("GET", "/workflows/new"): _SHELL + " (the editor, empty)",
    ("GET", "/workflows/{workflow_id}"): _SHELL + " (the page is the same for every id)",
    ("GET", "/workflows/{workflow_id}/edit"): _SHELL + " (the page is the same for every id)",
    ("GET", "/runs"): _SHELL,
    ("GET", "/runs/{run_id}"): _SHELL + " (the page is the same for every id)",
    ("MOUNT", "/ui"): "the pages' CSS, JavaScript and icon (ui/static)",
    ("MOUNT", "/trace-viewer"): "Playwright's trace viewer, from the installed package; it "
    "opens a trace.zip by its artifact URL, which needs the key",
}

# What to request under a mount: one file it serves.
MOUNT_PROBES = {
    "/static/swagger": "/static/swagger/swagger-ui.css",
    "/ui": "/ui/app.js",
    "/trace-viewer": "/trace-viewer/index.html",
}

MARKER = "Route guard zq7-marker"  # the runs' and workflow's title: public answers never show it
WRONG_KEY_ANSWER = {"detail": UNAUTHORIZED_DETAIL}


# --- the route table ----------------------------------------------------------------------


def served_app() -> FastAPI:
    """The application as `glassbox serve` builds it (api.cli: `create_app(Settings.load())`)."""
    return create_app(Settings.load())


def route_keys(app: FastAPI) -> list[Key]:
    """Every route of `app`, included routers flattened; ("?", what) for a kind not understood."""
    keys: list[Key] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or ""
        if isinstance(route, Mount):
            keys.append(("MOUNT", path))
        elif isinstance(route, WebSocketRoute):
            keys.append(("WS", path))
        elif context.methods:
            keys.extend((method, path) for method in sorted(context.methods))
        else:
            keys.append(("?", f"{type(route).__name__} {path or route!r}"))
    return keys


def classification_problems(keys: list[Key]) -> list[str]:
    problems = []
    for key in keys:
        if key[0] == "?":
            problems.append(f"a route of a kind this test cannot request: {key[1]}")
        elif sum(key in table for table in (PROTECTED, PUBLIC, TOKEN)) > 1:
            problems.append(f"{key[0]} {key[1]} is listed in more than one table")
        elif key not in PROTECTED and key not in PUBLIC and key not in TOKEN:
            problems.append(
                f"unclassified route {key[0]} {key[1]}: add it to PROTECTED, or to PUBLIC with "
                "the reason it carries no data"
            )
        elif key[0] == "MOUNT" and key[1] not in MOUNT_PROBES:
            problems.append(f"mount {key[1]}: name a file it serves in MOUNT_PROBES")
    for key in sorted((PROTECTED | PUBLIC.keys() | TOKEN.keys()) - set(keys)):
        problems.append(f"{key[0]} {key[1]} is in the table but not in the app: drop it")
    return problems


def test_every_route_is_classified() -> None:
    problems = classification_problems(route_keys(served_app()))
    assert not problems, "\n".join(problems)


# --- the service, its data and its key ----------------------------------------------------


@dataclass
class Guarded:
    service: Service
    key: str
    ids: dict[str, str]  # path parameter -> a real id
    victims: dict[str, str]  # the same, for DELETE: a second run and workflow

    @property
    def wrong_key(self) -> str:
        head, secret = self.key.rsplit("_", 1)  # the right prefix, another secret
        return f"{head}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, site: SiteServer) -> Iterator[Guarded]:
    """`glassbox serve` (SQLite) with two finished runs and two saved workflows, made while no
    key existed; then an API key, created with the CLI, in force."""
    with running_service(tmp_path_factory.mktemp("route-guard")) as service:
        with httpx.Client(base_url=service.api, timeout=30) as client:
            saved = []
            for _ in range(2):
                answer = client.post(
                    "/workflows", json={"definition": visit_workflow(site, title=MARKER)}
                )
                assert answer.status_code == 201, answer.text
                saved.append(answer.json()["id"])
            runs = [create_run(client, visit_workflow(site, title=MARKER)) for _ in range(2)]
            for workflow_id in saved:  # a run of each saved workflow: a version of its cache
                answer = client.post("/runs", json={"workflow_id": workflow_id})
                assert answer.status_code == 201, answer.text
                runs.append(answer.json())
            for run in runs:
                record = wait_status(client, run["id"], timeout=90)
                assert record["status"] == "completed", record["failure_reason"]
            versions = [client.get(f"/workflows/{w}/cache").json()["items"][0]["id"] for w in saved]
            upload = client.post("/uploads", files={"file": ("note.txt", b"route guard")})
            assert upload.status_code == 201, upload.text
            trigger_ids = []
            for workflow_id in saved:
                answer = client.post(f"/workflows/{workflow_id}/triggers", json={})
                assert answer.status_code == 201, answer.text
                trigger_ids.append(answer.json()["id"])
            schedules = []
            for workflow_id in saved:  # far in the future: they never fire here
                answer = client.post(
                    f"/workflows/{workflow_id}/schedules",
                    json={"title": MARKER, "at": "2099-01-01T00:00:00Z"},
                )
                assert answer.status_code == 201, answer.text
                schedules.append(answer.json()["id"])
            artifacts = client.get(f"/runs/{runs[0]['id']}/artifacts").json()["items"]
            code = [a for a in artifacts if a["kind"] == "code"]
            assert code, f"the run has no code artifact: {[a['kind'] for a in artifacts]}"

            key = create_key(service, "route-guard")
            wait_until(
                lambda: client.get("/runs").status_code == 401,
                timeout=30,
                what="the new API key to be in force",
            )
        yield Guarded(
            service=service,
            key=key,
            ids={
                "run_id": runs[0]["id"],
                "workflow_id": saved[0],
                "artifact_id": code[0]["id"],
                "schedule_id": schedules[0],
                "trigger_id": trigger_ids[0],
                "upload_id": upload.json()["id"],
                "version_id": versions[0],
            },
            victims={
                "run_id": runs[1]["id"],
                "workflow_id": saved[1],
                "schedule_id": schedules[1],
                "trigger_id": trigger_ids[1],
                "version_id": versions[1],
            },
        )


# --- requesting a route -------------------------------------------------------------------

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes


def fill(path: str, ids: dict[str, str]) -> str:
    """The path with real ids in it; KeyError names a parameter with no real value."""
    return _PARAM.sub(lambda m: ids[m.group(1)], path)


def request(
    base_url: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Answer:
    """One request as a client sends it: JSON on state-changing methods; an event stream is
    left unread (its status and headers are the answer)."""
    body: dict[str, Any] | None = {} if method in {"POST", "PUT", "PATCH"} else None
    with (
        httpx.Client(base_url=base_url, timeout=30) as http,
        http.stream(method, path, headers=headers, params=params, json=body) as answer,
    ):
        streaming = answer.headers.get("content-type", "").startswith("text/event-stream")
        return Answer(answer.status_code, answer.headers, b"" if streaming else answer.read())


def ws_open(url: str, **kwargs: Any) -> int:
    """101 when the WebSocket handshake succeeds, else the HTTP status it was refused with."""
    try:
        with ws_connect(url, open_timeout=30, **kwargs):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def refused_as_unauthorized(answer: Answer) -> str:
    """'' for a proper 401, else what was wrong with the answer."""
    if answer.status != 401:
        return f"answered {answer.status}, not 401"
    if answer.headers.get("www-authenticate") != "ApiKey":
        return f"401 without WWW-Authenticate: ApiKey ({answer.headers})"
    if httpx.Response(401, content=answer.body).json() != WRONG_KEY_ANSWER:
        return f"401 with the body {answer.body[:200]!r}"
    return ""


def check_token_only(guarded: Guarded, method: str, path: str, url_path: str) -> list[str]:
    """Refused without the route's own token, even with the right API key."""
    base = guarded.service.base_url
    problems = []
    for how, headers in (
        ("without its token", {}),
        ("with only the right API key", guarded.headers()),
        ("with a wrong token", {"X-Glassbox-Token": "gbt_wrong", **guarded.headers()}),
    ):
        answer = request(base, method, url_path, headers=headers)
        if answer.status != 401:
            problems.append(f"{method} {path} {how}: answered {answer.status}, not 401")
    return problems


def check_protected(guarded: Guarded, method: str, path: str, url_path: str) -> list[str]:
    """Refusals only: the right key is tried once every refusal is checked (it changes data)."""
    base = guarded.service.base_url
    wrong = guarded.wrong_key
    problems = []
    if method == "WS":
        ws_url = base.replace("http://", "ws://") + url_path
        for how, kwargs in (
            ("without a key", {}),
            ("with a wrong X-API-Key", {"additional_headers": {"X-API-Key": wrong}}),
        ):
            status = ws_open(ws_url, **kwargs)
            if status == 101:
                problems.append(f"WS {path} accepted the connection {how}")
        if ws_open(f"{ws_url}?api_key={wrong}") == 101:
            problems.append(f"WS {path} accepted the connection with a wrong ?api_key=")
        return problems
    for how, headers, params in (
        ("without a key", {}, {}),
        ("with a wrong X-API-Key", {"X-API-Key": wrong}, {}),
        ("with a wrong bearer token", {"Authorization": f"Bearer {wrong}"}, {}),
        ("with a wrong ?api_key=", {}, {"api_key": wrong}),
    ):
        problem = refused_as_unauthorized(
            request(base, method, url_path, headers=headers, params=params)
        )
        if problem:
            problems.append(f"{method} {path} {how}: {problem}")
    return problems


def check_served_with_key(guarded: Guarded, method: str, path: str, url_path: str) -> list[str]:
    base = guarded.service.base_url
    if method == "WS":
        ws_url = base.replace("http://", "ws://") + url_path
        status = ws_open(f"{ws_url}?api_key={guarded.key}")  # as browsers send it
        if status != 101:
            return [f"WS {path} with the right ?api_key=: refused with {status}"]
        return []
    answer = request(base, method, url_path, headers=guarded.headers())
    if answer.status in (401, 403) or answer.status >= 500:
        return [f"{method} {path} with the right key: {answer.status} {answer.body[:300]!r}"]
    return []


def check_public(guarded: Guarded, method: str, path: str, url_path: str) -> list[str]:
    base = guarded.service.base_url
    problems = []
    answers = {
        "without a key": request(base, method, url_path),
        "with a wrong key": request(base, method, url_path, headers={"X-API-Key": "gbx_nope"}),
    }
    for how, answer in answers.items():
        if answer.status >= 400:
            problems.append(f"public {method} {path} {how}: {answer.status}")
        shown = answer.body.decode(errors="replace")
        leaked = [v for v in (MARKER, *guarded.ids.values()) if v in shown]
        if leaked:
            problems.append(f"public {method} {path} {how} shows data: {leaked}")
    return problems


def check_public_page_is_the_same_for_every_id(
    guarded: Guarded, method: str, path: str
) -> list[str]:
    """A public route with ids in its path answers the same for a real id and a made-up one."""
    base = guarded.service.base_url
    real = request(base, method, fill(path, guarded.ids))
    made_up = request(base, method, _PARAM.sub("no_such_id", path))
    if (real.status, real.body) != (made_up.status, made_up.body):
        return [f"public {method} {path} answers differently for a real id: it carries data"]
    return []


# --- the test -----------------------------------------------------------------------------


def test_the_ids_are_real(guarded: Guarded) -> None:
    """The requests of the next test name real data: with the key, each id is found."""
    with httpx.Client(base_url=guarded.service.api, timeout=30, headers=guarded.headers()) as api:
        run_id, workflow_id = guarded.ids["run_id"], guarded.ids["workflow_id"]
        assert api.get(f"/runs/{run_id}").json()["title"] == MARKER
        assert api.get(f"/workflows/{workflow_id}").json()["title"] == MARKER
        content = api.get(f"/artifacts/{guarded.ids['artifact_id']}/content")
        assert content.status_code == 200 and b"playwright" in content.content


def test_every_route_is_guarded_as_classified(guarded: Guarded) -> None:
    keys = route_keys(served_app())
    problems = classification_problems(keys)
    known = [k for k in keys if k in PROTECTED or k in PUBLIC or k in TOKEN]

    # The enumerated app is the one served: everything the service documents is in it.
    openapi = request(guarded.service.base_url, "GET", "/openapi.json")
    documented = {
        (method.upper(), path)
        for path, operations in httpx.Response(200, content=openapi.body).json()["paths"].items()
        for method in operations
    }
    problems += [f"served but not enumerated: {m} {p}" for m, p in sorted(documented - set(keys))]

    def url_path(method: str, path: str) -> str | None:
        if method == "MOUNT":
            return MOUNT_PROBES.get(path)
        ids = guarded.victims if method == "DELETE" else guarded.ids
        try:
            return fill(path, ids)
        except KeyError as missing:
            problems.append(f"{method} {path}: no real value for {missing} (add one to `guarded`)")
            return None

    with httpx.Client(base_url=guarded.service.api, timeout=30, headers=guarded.headers()) as api:
        before = api.get("/runs").json()["counts"]

        routes = [(m, p, u) for m, p in known if (u := url_path(m, p))]
        for method, path, filled in routes:
            if (method, path) in PROTECTED:
                problems += check_protected(guarded, method, path, filled)
            elif (method, path) in TOKEN:
                problems += check_token_only(guarded, method, path, filled)
            else:
                mounted = method == "MOUNT"
                problems += check_public(guarded, "GET" if mounted else method, path, filled)
                if not mounted and filled != path:
                    problems += check_public_page_is_the_same_for_every_id(guarded, method, path)

        # Nothing the refused requests asked for happened.
        assert api.get("/runs").json()["counts"] == before
        for name, value in guarded.victims.items():
            resource = name.removesuffix("_id") + "s"  # run_id -> runs, schedule_id -> schedules
            if name == "version_id":
                resource = f"workflows/{guarded.victims['workflow_id']}/cache"
            assert api.get(f"/{resource}/{value}").status_code == 200, (name, value)

        # The right key opens every protected route (DELETEs last: they remove their victims).
        for method, path, filled in sorted(routes, key=lambda k: k[0] == "DELETE"):
            if (method, path) in PROTECTED:
                problems += check_served_with_key(guarded, method, path, filled)

    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
