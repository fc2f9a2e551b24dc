"""FastAPI dependencies: the services, a database session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.settings import ServiceSettings
from runner.session import Services
from storage.notify import LocalNotifier


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_notifier(request: Request) -> LocalNotifier:
    notifier: LocalNotifier = request.app.state.notifier
    return notifier


def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    services: Services = request.app.state.services
    async with services.db.session() as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
NotifierDep = Annotated[LocalNotifier, Depends(get_notifier)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
