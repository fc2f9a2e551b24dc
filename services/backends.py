"""The backends a Glassbox process opens: the database, the object store, the sealer of secret
inputs, the notifier, and the settings they were opened with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.settings import RunnerSettings
from storage import migrate
from storage.db import Database
from storage.errors import ConfigurationError
from storage.notify import LocalNotifier, notifier_for
from storage.objects import ObjectStore, open_store
from storage.sealing import Sealer, load_key
from storage.settings import StorageSettings

__all__ = ["RunnerSettings", "Services", "StorageSettings", "open_services"]


@dataclass
class Services:
    """Satisfies `runner.resources.RunnerResources`: workers and in-process runs use it as is."""

    storage: StorageSettings
    runner: RunnerSettings
    db: Database
    store: ObjectStore
    sealer: Sealer
    notifier: LocalNotifier
    """Publishing works as opened; `await notifier.start()` to hear other processes too."""

    @property
    def spool_dir(self) -> Path:
        return self.storage.data_dir / "spool"

    async def close(self) -> None:
        await self.notifier.close()
        await self.db.dispose()


def open_services(
    storage: StorageSettings | None = None,
    runner: RunnerSettings | None = None,
    *,
    secret_key: str | None = None,
) -> Services:
    storage = storage or StorageSettings()
    runner = runner or RunnerSettings()
    if runner.auto_migrate:
        migrate.upgrade(storage.resolved_database_url)
    try:
        store = open_store(storage)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return Services(
        storage=storage,
        runner=runner,
        db=Database(storage.resolved_database_url),
        store=store,
        sealer=Sealer(load_key(secret_key, storage.data_dir)),
        notifier=notifier_for(storage.resolved_database_url),
    )
