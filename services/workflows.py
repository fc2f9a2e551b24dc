"""Workflows: reading and checking definitions, and saved workflows with their parameter
defaults. The runner's parser is offered here under the names entry points use."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from runner.codegen import constant_name
from runner.workflow import (
    Workflow,
    load_document,
    load_workflow_file,
    parse_workflow,
    workflow_to_json,
)
from runner.workflow_schema import workflow_json_schema
from services.backends import Services
from storage import schedules as stored_schedules
from storage import triggers as stored_triggers
from storage import workflows as stored
from storage.errors import ValidationFailed
from storage.models import Run
from storage.models import Workflow as SavedWorkflow

__all__ = [
    "SavedWorkflow",
    "Workflow",
    "archive_workflow",
    "checked_definition",
    "definition_from_source",
    "definition_source",
    "get_workflow",
    "latest_runs",
    "list_workflows",
    "load_workflow_file",
    "parse_workflow",
    "replace_workflow",
    "save_workflow",
    "secret_env_name",
    "source_line",
    "workflow_json_schema",
]


def secret_env_name(parameter: str) -> str:
    """The environment variable a generated script or snippet reads a secret parameter from."""
    return constant_name(parameter)


def checked_definition(
    services: Services, definition: dict[str, Any], title: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The title and the normalized definition a saved workflow keeps. Refusals name the field
    within the definition."""
    workflow = parse_workflow(definition)
    _check_static_urls(workflow, services.runner.url_schemes)
    for name, parameter in workflow.parameters.items():
        if parameter.secret and parameter.default is not None:
            raise ValidationFailed(
                f"parameters.{name}.default",
                "a saved workflow cannot keep a secret's value; give it with each run",
            )
    # Stored as normalized JSON; secret defaults are masked, never stored in clear.
    return title or workflow.title, workflow_to_json(workflow)


def _check_static_urls(workflow: Workflow, schemes: tuple[str, ...]) -> None:
    """URLs without templates are checked now; the others when a run renders them."""

    def check(url: str | None, field: str) -> None:
        if url and "{{" not in url and urlsplit(url).scheme.lower() not in schemes:
            raise ValidationFailed(field, f"URL scheme {urlsplit(url).scheme!r} is not allowed")

    check(workflow.url, "url")
    for i, block in enumerate(workflow.blocks):
        for j, step in enumerate(getattr(block, "steps", [])):
            if step.verb == "goto":
                check(step.args.url, f"blocks[{i}].steps[{j}].goto.url")


async def save_workflow(
    services: Services, definition: dict[str, Any], title: str | None = None
) -> SavedWorkflow:
    title, normalized = checked_definition(services, definition, title)
    async with services.db.session() as session:
        saved = await stored.create_workflow(session=session, title=title, definition=normalized)
        await session.commit()
    return saved


async def replace_workflow(
    services: Services, workflow_id: str, definition: dict[str, Any], title: str | None = None
) -> SavedWorkflow:
    async with services.db.session() as session:
        await stored.get_workflow(session=session, workflow_id=workflow_id)
        title, normalized = checked_definition(services, definition, title)
        saved = await stored.update_workflow(
            session=session, workflow_id=workflow_id, title=title, definition=normalized
        )
        await session.commit()
    return saved


async def list_workflows(services: Services) -> list[SavedWorkflow]:
    async with services.db.session() as session:
        return await stored.list_workflows(session=session)


async def get_workflow(services: Services, workflow_id: str) -> SavedWorkflow:
    async with services.db.session() as session:
        return await stored.get_workflow(session=session, workflow_id=workflow_id)


async def archive_workflow(services: Services, workflow_id: str) -> None:
    """Runs keep their own copy of the definition; the saved workflow is only hidden, and its
    schedules and triggers are disabled."""
    async with services.db.session() as session:
        await stored.archive_workflow(session=session, workflow_id=workflow_id)
        await stored_schedules.disable_for_workflow(session=session, workflow_id=workflow_id)
        await stored_triggers.disable_for_workflow(session=session, workflow_id=workflow_id)
        await session.commit()


async def latest_runs(services: Services, workflow_ids: list[str]) -> dict[str, Run]:
    """The newest run of each saved workflow (for lists: its last run and status)."""
    async with services.db.session() as session:
        return await stored.latest_runs(session=session, workflow_ids=workflow_ids)


def definition_from_source(text: str) -> dict[str, Any]:
    """A workflow sent as YAML or JSON text (the editor's): its definition, or a refusal that
    gives the line."""
    document = load_document(text, source="source")
    if not isinstance(document, dict):
        raise ValidationFailed("source", "a workflow is a mapping (YAML or JSON object)", line=1)
    return document


def definition_source(definition: dict[str, Any]) -> str:
    """A saved definition as YAML text, in the format's own key order (for the editor)."""
    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=100)


def source_line(text: str, field: str) -> int | None:
    """The line (1-based) where `field` (e.g. `blocks[0].steps[1].fill`) is written in `text`;
    the nearest enclosing field that is, or None. Composing builds the node tree without
    expanding aliases, so this costs what the text does."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    parts = [p for p in field.replace("[", ".[").split(".") if p]
    for part in parts:
        found: yaml.Node | None = None
        if isinstance(node, yaml.SequenceNode) and part.startswith("["):
            index = part.strip("[]")
            if index.isdigit() and int(index) < len(node.value):
                found = node.value[int(index)]
                line = found.start_mark.line + 1
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    found, line = value, key.start_mark.line + 1  # the key's line
                    break
        if found is None:
            break
        node = found
    return line


def workflow_document(path: Path) -> tuple[dict[str, Any], list[str]]:
    """A workflow file as written (YAML or JSON), checked like `load_workflow_file`, and the
    names of its file parameters: what `glassbox --server URL run` sends to the server."""
    workflow = load_workflow_file(path)
    document: dict[str, Any] = load_document(path.read_text(encoding="utf-8"), source=str(path))
    return document, list(workflow.file_names)
