"""`GET /api/v1/schemas/workflow.json`: the JSON Schema of the workflow format, public because
it carries no data (editors and client generators fetch it without a key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.records import API_PREFIX
from services.workflows import workflow_json_schema

router = APIRouter(prefix=API_PREFIX, tags=["schemas"])


@router.get(
    "/schemas/workflow.json",
    summary="The JSON Schema of the workflow format (YAML or JSON), the one the API enforces",
    response_description="A JSON Schema, draft 2020-12",
)
async def workflow_schema() -> dict[str, Any]:
    return workflow_json_schema()
