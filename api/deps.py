"""FastAPI dependencies: the services, a database session, the settings, the webhook
dispatcher — all opened by the app's lifespan and kept on `app.state`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.backends import Services
from services.settings import Settings
from services.webhooks import WebhookDispatcher
from storage.db import Database


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_dispatcher(request: Request) -> WebhookDispatcher:
    dispatcher: WebhookDispatcher = request.app.state.webhooks
    return dispatcher


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.session() as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DispatcherDep = Annotated[WebhookDispatcher, Depends(get_dispatcher)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
