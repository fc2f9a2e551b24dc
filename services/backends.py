"""The backends a Glassbox process opens: the database, the object store, the sealer of secret
inputs, the notifier, and the settings they were opened with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.settings import LLMSettings, RunnerSettings, Settings, StorageSettings
from storage import migrate
from storage.db import Database
from storage.errors import ConfigurationError
from storage.notify import LocalNotifier, notifier_for
from storage.objects import ObjectStore, open_store
from storage.sealing import Sealer, load_key

__all__ = ["Services", "open_services"]


@dataclass
class Services:
    """Satisfies `runner.resources.RunnerResources`: workers and in-process runs use it as is."""

    settings: Settings
    db: Database
    store: ObjectStore
    sealer: Sealer
    notifier: LocalNotifier
    """Publishing works as opened; `await notifier.start()` to hear other processes too."""

    @property
    def storage(self) -> StorageSettings:
        return self.settings.storage

    @property
    def runner(self) -> RunnerSettings:
        return self.settings.runner

    @property
    def llm(self) -> LLMSettings:
        return self.settings.llm

    @property
    def spool_dir(self) -> Path:
        return self.storage.data_dir / "spool"

    async def close(self) -> None:
        await self.notifier.close()
        await self.db.dispose()


def open_services(settings: Settings) -> Services:
    storage = settings.storage
    if settings.runner.auto_migrate:
        migrate.upgrade(storage.resolved_database_url)
    try:
        store = open_store(storage)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    secret = settings.service.secret_key
    key = load_key(secret.get_secret_value() if secret else None, storage.data_dir)
    return Services(
        settings=settings,
        db=Database(storage.resolved_database_url),
        store=store,
        sealer=Sealer(key),
        notifier=notifier_for(storage.resolved_database_url),
    )
