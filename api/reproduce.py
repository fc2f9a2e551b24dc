"""Snippets that recreate a run through the API: curl, Python (httpx), PowerShell.
Secret parameters are read from environment variables named after them in upper case."""

from __future__ import annotations

import json
import pprint
from typing import Any

from services.runs import RunOptions
from services.workflows import parse_workflow, secret_env_name
from storage.models import Run

_MARK = "\u0000SECRET:{}\u0000"


def request_body(run: Run) -> tuple[dict[str, Any], list[str]]:
    workflow = parse_workflow(run.definition)
    secrets = sorted(workflow.secret_names)
    parameters = {
        name: (_MARK.format(name) if name in secrets else value)
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
    return body, [n for n in secrets if n in parameters]


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
            filter_text = filter_text.replace(quoted, f"${secret_env_name(name)}")
        args = " ".join(
            f'--arg {secret_env_name(n)} "${{{secret_env_name(n)}:?set {secret_env_name(n)}}}"'
            for n in secrets
        )
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

    py_body = repr_python(body, secrets)
    python = (
        "import os\n\nimport httpx\n\n"
        f"body = {py_body}\n"
        f"response = httpx.post(\n    {url!r},\n    json=body,\n"
        '    headers={"X-API-Key": os.environ.get("GLASSBOX_API_KEY", "")},\n)\n'
        'response.raise_for_status()\nprint(response.json()["id"])\n'
    )

    ps_data = pretty.replace("'", "''")
    ps_fill = ""
    for name in secrets:
        const = secret_env_name(name)
        ps_data = ps_data.replace('"' + json_marker.format(name) + '"', f"__{const}__")
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
        "body": body_masked(body, secrets),
        "secret_env": [secret_env_name(n) for n in secrets],
    }


def body_masked(body: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    masked = dict(body)
    masked["parameters"] = {
        k: ("********" if k in secrets else v) for k, v in body["parameters"].items()
    }
    return masked


class _FromEnv:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"os.environ[{self.name!r}]"


def repr_python(body: dict[str, Any], secrets: list[str]) -> str:
    data = dict(body)
    data["parameters"] = {
        k: (_FromEnv(secret_env_name(k)) if k in secrets else v)
        for k, v in body["parameters"].items()
    }
    return pprint.pformat(data, indent=4, width=96, sort_dicts=False)
