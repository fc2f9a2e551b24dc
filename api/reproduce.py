"""Snippets that recreate a run through the API: curl, Python (httpx), PowerShell.
Secret parameters are read from environment variables named after them in upper case; secret
headers from `HEADER_<NAME>` (`HEADER_AUTHORIZATION`) and the proxy's password from
`PROXY_PASSWORD`."""

from __future__ import annotations

import json
import pprint
from typing import Any

from services.runs import SECRET_HEADERS, RunOptions
from services.workflows import parse_workflow, secret_env_name
from storage.models import Run

_MARK = "\u0000SECRET:{}\u0000"


def request_body(run: Run) -> tuple[dict[str, Any], list[str]]:
    """The body of `POST /runs` that recreates the run, each secret value replaced by a marker
    naming its environment variable; and those variables' names."""
    workflow = parse_workflow(run.definition)
    env: list[str] = []

    def from_env(name: str) -> str:
        env.append(name)
        return _MARK.format(name)

    parameters = {
        name: (from_env(secret_env_name(name)) if name in workflow.secret_names else value)
        for name, value in (run.parameters or {}).items()
    }
    body: dict[str, Any] = {"workflow": run.definition, "parameters": parameters}
    # The options a request must give to get the run's: those unlike a bare request's.
    options = RunOptions.of(run)
    bare = RunOptions(source=options.source, title=workflow.title, timeout_s=workflow.timeout_s)
    for name in RunOptions.REQUESTED:
        value = getattr(options, name)
        if value and value != getattr(bare, name):
            body[name] = value
    if body.get("proxy"):
        body["proxy"] = {
            k: (from_env("PROXY_PASSWORD") if k == "password" else v)
            for k, v in body["proxy"].items()
        }
    if body.get("extra_http_headers"):
        body["extra_http_headers"] = {
            k: (from_env(f"HEADER_{secret_env_name(k)}") if k.lower() in SECRET_HEADERS else v)
            for k, v in body["extra_http_headers"].items()
        }
    return body, sorted(set(env))


def snippets(run: Run, base_url: str) -> dict[str, Any]:
    body, secrets = request_body(run)
    pretty = json.dumps(body, indent=2, ensure_ascii=False)
    url = f"{base_url}/api/v1/runs"
    json_marker = json.dumps(_MARK.format("X"))[1:-1].replace("X", "{}")

    # curl: with secrets, jq builds the body so any value is JSON-escaped properly.
    if secrets:
        filter_text = pretty
        for name in secrets:
            quoted = '"' + json_marker.format(name) + '"'
            filter_text = filter_text.replace(quoted, f"${name}")
        args = " ".join(f'--arg {n} "${{{n}:?set {n}}}"' for n in secrets)
        curl = (
            f"jq -n {args} \"$(cat <<'JSON'\n{filter_text}\nJSON\n)\" |\n"
            f"curl -sS -X POST '{url}' \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            '  -H "X-API-Key: ${GLASSBOX_API_KEY:-}" \\\n'
            "  --data-binary @-\n"
        )
    else:
        curl = (
            f"curl -sS -X POST '{url}' \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            '  -H "X-API-Key: ${GLASSBOX_API_KEY:-}" \\\n'
            f"  --data-binary @- <<'JSON'\n{pretty}\nJSON\n"
        )

    py_body = repr_python(body)
    python = (
        "import os\n\nimport httpx\n\n"
        f"body = {py_body}\n"
        f"response = httpx.post(\n    {url!r},\n    json=body,\n"
        '    headers={"X-API-Key": os.environ.get("GLASSBOX_API_KEY", "")},\n'
        "    timeout=30,  # a busy server queues the run in well under this\n)\n"
        'response.raise_for_status()\nprint(response.json()["id"])\n'
    )

    ps_data = pretty.replace("'", "''")
    ps_fill = ""
    for const in secrets:
        ps_data = ps_data.replace('"' + json_marker.format(const) + '"', f"__{const}__")
        ps_fill += f".Replace('__{const}__', (ConvertTo-Json ([string]$env:{const})))"
    powershell = (
        f"$body = ('{ps_data}'){ps_fill}\n"
        f"Invoke-RestMethod -Method Post -Uri '{url}' -ContentType 'application/json' "
        "-Headers @{ 'X-API-Key' = $env:GLASSBOX_API_KEY } -Body $body\n"
    )
    return {
        "curl": curl,
        "python": python,
        "powershell": powershell,
        "body": _replace_marks(body, lambda _name: "********"),
        "secret_env": secrets,
    }


def _replace_marks(value: Any, replace: Any) -> Any:
    """`value` with every secret's marker replaced by `replace(environment variable name)`."""
    if isinstance(value, dict):
        return {k: _replace_marks(v, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_marks(v, replace) for v in value]
    prefix, _, suffix = _MARK.partition("{}")
    if isinstance(value, str) and value.startswith(prefix) and value.endswith(suffix):
        return replace(value[len(prefix) : -len(suffix)])
    return value


class _FromEnv:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"os.environ[{self.name!r}]"


def repr_python(body: dict[str, Any]) -> str:
    data = _replace_marks(body, _FromEnv)
    return pprint.pformat(data, indent=4, width=96, sort_dicts=False)
