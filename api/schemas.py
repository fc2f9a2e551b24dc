"""Request and response bodies of the REST API."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from services.runs import MAX_TAGS, TAG, RunOptions
from storage.status import RunSource

EXAMPLE_WORKFLOW: dict[str, Any] = {
    "title": "Find the cheapest lamp",
    "url": "http://127.0.0.1:8080/shop/",
    "parameters": {"query": {"type": "string", "default": "lamp"}},
    "blocks": [
        {
            "label": "search",
            "type": "action",
            "steps": [
                {"goto": "{{ url }}search.html"},
                {"fill": {"selector": "#q", "value": "{{ query }}"}},
                {"click": {"role": "button", "name": "Search"}},
                {"wait_for": {"selector": ".result", "state": "visible"}},
            ],
        },
        {
            "label": "products",
            "type": "extract",
            "fields": {"cheapest": {"selector": ".result .name", "first": True}},
        },
    ],
}


MAX_TEXT = 2000
"""The longest URL, proxy field or header value a request may give."""
MAX_HEADERS = 50

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


def _header_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError("invalid header name (letters, digits and !#$%&'*+.^_`|~- only)")
    return name


def _header_value(value: str) -> str:
    if not _HEADER_VALUE.match(value):
        raise ValueError("invalid header value (no CR, LF or other control characters)")
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, Field(max_length=8192), AfterValidator(_header_value)]
Tags = Annotated[
    list[Annotated[str, Field(json_schema_extra={"pattern": f"^{TAG.pattern}$"})]],
    Field(json_schema_extra={"maxItems": MAX_TAGS}),
]
"""A request's tags as the schema tells them; `services.runs.check_tags` refuses others, naming
the tag (pydantic's own checks would word the refusal differently)."""
Params = Annotated[dict[Annotated[str, Field(max_length=200)], Any], Field(max_length=200)]


class Proxy(BaseModel):
    """Playwright's proxy settings."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(min_length=1, max_length=MAX_TEXT, examples=["http://proxy:3128"])
    bypass: str | None = Field(default=None, max_length=MAX_TEXT)
    username: str | None = Field(default=None, max_length=MAX_TEXT)
    password: str | None = Field(default=None, max_length=MAX_TEXT)


def _exactly_one(**kinds: str) -> list[JsonValue]:
    """JSON Schema for "give exactly one of these fields" (each non-null, of its type)."""
    return [
        {"required": [name], "properties": {name: {"type": kind}}} for name, kind in kinds.items()
    ]


class RunCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": _exactly_one(workflow="object", workflow_id="string"),
            "examples": [
                {
                    "workflow": EXAMPLE_WORKFLOW,
                    "parameters": {"query": "desk lamp"},
                    "webhook_url": "https://example.com/hooks/glassbox",
                    "tags": ["nightly", "shop"],
                    "metadata": {"ticket": "OPS-42"},
                }
            ],
        },
    )

    workflow: dict[str, Any] | None = Field(
        default=None, description="An inline workflow (the YAML format, as JSON)."
    )
    workflow_id: str | None = Field(
        default=None, max_length=200, description="A saved workflow's id."
    )
    parameters: Params = Field(default_factory=dict)
    title: str | None = Field(default=None, max_length=500)
    timeout_s: int | None = Field(default=None, gt=0, le=86_400)
    webhook_url: str | None = Field(default=None, max_length=MAX_TEXT)
    proxy: Proxy | None = Field(
        default=None, description='Playwright proxy settings, e.g. {"server": "http://p:3128"}.'
    )
    extra_http_headers: (
        Annotated[dict[HeaderName, HeaderValue], Field(max_length=MAX_HEADERS)] | None
    ) = None
    run_with: Literal["agent", "code"] = "agent"
    tags: Tags = Field(
        default_factory=list, description="Labels to find the run by (`GET /runs?tag=`)."
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="A small JSON object kept with the run (up to 8 KiB)."
    )

    def options(self) -> RunOptions:
        requested = self.model_dump(include=set(RunOptions.REQUESTED) - {"proxy"})
        proxy = self.proxy.model_dump(exclude_none=True) if self.proxy else None
        return RunOptions(
            source=RunSource.api, workflow_id=self.workflow_id, proxy=proxy, **requested
        )


class RunDuplicate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"parameters": {"query": "floor lamp"}}]},
    )

    parameters: Params = Field(
        default_factory=dict, description="Parameters to change; the others are kept."
    )
    title: str | None = Field(default=None, max_length=500)
    extra_http_headers: dict[str, str] | None = Field(
        default=None,
        description="Values of the run's secret headers (Authorization, Cookie, …): they are "
        "not kept after a run ends.",
    )
    proxy_password: str | None = Field(
        default=None, description="The proxy's password: it is not kept after a run ends."
    )


class RunContinue(BaseModel):
    """What a run continuing from another does, in its browser state and on its final page:
    exactly one of a workflow, blocks or a goal."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"goal": "Open the cart and report its total"}],
            "oneOf": _exactly_one(workflow="object", blocks="array", goal="string"),
        },
    )

    workflow: dict[str, Any] | None = Field(
        default=None, description="A whole workflow (the YAML format, as JSON)."
    )
    blocks: list[Any] | None = Field(
        default=None, max_length=200, description="Blocks, run as a workflow of the run's URL."
    )
    goal: str | None = Field(
        default=None,
        min_length=1,
        max_length=20_000,
        description="A goal for the agent (one goal block).",
    )
    parameters: Params = Field(default_factory=dict)
    title: str | None = Field(default=None, max_length=500)


class RunRerun(BaseModel):
    """Optional: the secrets of a finished run, which are not kept after it ends."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"parameters": {"password": "…"}}]},
    )

    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Values of the run's secret parameters (others may be changed too).",
    )
    extra_http_headers: dict[str, str] | None = Field(
        default=None, description="Values of the run's secret headers."
    )
    proxy_password: str | None = Field(default=None, description="The proxy's password.")
    from_block: str | None = Field(
        default=None,
        max_length=200,
        description="A block's label: the blocks before it replay the run's own recorded "
        "actions (no LLM call), it and the rest run live.",
    )


class WorkflowCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": _exactly_one(definition="object", source="string"),
            "examples": [{"definition": EXAMPLE_WORKFLOW}],
        },
    )

    definition: dict[str, Any] | None = Field(
        default=None, description="The workflow (the YAML format, as JSON). Or give `source`."
    )
    source: str | None = Field(
        default=None,
        max_length=200_000,
        description="The workflow as YAML or JSON text (the web editor's); a refusal of it also "
        "gives the `line` of the field in the text.",
    )
    title: str | None = Field(default=None, max_length=500)


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None
    counts: dict[str, int] | None = None
