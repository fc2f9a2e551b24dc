"""/api/v1/runs/{id}/webhook-deliveries: the attempts made to deliver a run's webhook, and
sending it again. Delivery itself is `services.webhooks`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import DispatcherDep, SessionDep
from api.records import iso
from storage.models import WebhookDelivery
from storage.runs import get_run
from storage.webhooks import WebhookState, list_deliveries

router = APIRouter(tags=["webhooks"])


class WebhookDeliveryOut(BaseModel):
    id: str = Field(description="Delivery id, also sent as the X-Glassbox-Delivery header.")
    attempt: int = Field(description="1, 2, … per run, manual deliveries included.")
    at: str = Field(description="When the attempt started (ISO 8601, UTC).")
    url: str
    status_code: int | None = Field(description="The receiver's HTTP status; null if none.")
    error: str | None = Field(description="Why the attempt failed; null when delivered.")
    duration_ms: int | None
    manual: bool = Field(description="Sent with POST /runs/{id}/webhook-deliveries.")


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryOut]
    state: str | None = Field(
        default=None, description="pending, delivered, failed, or null when nothing is scheduled."
    )
    next_attempt_at: str | None = Field(
        default=None, description="When the next automatic attempt is due (while pending)."
    )


def delivery_record(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "attempt": delivery.attempt,
        "at": iso(delivery.at),
        "url": delivery.url,
        "status_code": delivery.status_code,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
        "manual": delivery.manual,
    }


@router.get(
    "/runs/{run_id}/webhook-deliveries",
    response_model=WebhookDeliveryList,
    summary="Webhook delivery attempts of a run",
    responses={404: {"description": "No such run."}},
)
async def list_webhook_deliveries(run_id: str, session: SessionDep) -> dict[str, Any]:
    run = await get_run(session=session, run_id=run_id)
    deliveries = await list_deliveries(session=session, run_id=run_id)
    return {
        "items": [delivery_record(d) for d in deliveries],
        "state": run.webhook_state,
        "next_attempt_at": (
            iso(run.webhook_next_at) if run.webhook_state == WebhookState.pending else None
        ),
    }


@router.post(
    "/runs/{run_id}/webhook-deliveries",
    status_code=202,
    response_model=WebhookDeliveryOut,
    summary="Send a finished run's record to its webhook again, now",
    responses={
        404: {"description": "No such run."},
        409: {"description": "The run has not finished, or has no webhook_url."},
    },
)
async def redeliver_webhook(run_id: str, dispatcher: DispatcherDep) -> dict[str, Any]:
    return delivery_record(await dispatcher.redeliver(run_id))
