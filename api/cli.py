"""The `glassbox` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from api.records import run_record
from services.backends import Services, open_services
from services.runs import CardListener, RunOptions, inputs_for, queue_run, run_now, runner_env
from services.settings import Settings
from services.uploads import upload_local_files
from services.workflows import load_workflow_file, workflow_json_schema
from storage import migrate
from storage.artifacts import get_artifact, list_artifacts
from storage.errors import ConfigurationError, GlassboxError, NotFound, ValidationFailed
from storage.models import TimelineCard
from storage.runs import get_run
from storage.status import RunSource, RunStatus

EXIT_OK, EXIT_RUN_NOT_COMPLETED, EXIT_REFUSED = 0, 1, 2

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValidationFailed("--param", f"expected NAME=VALUE, got {pair!r}")
        params[name.strip()] = value
    return params


_STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "terminated": "red",
    "timed_out": "yellow",
    "canceled": "yellow",
    "interrupted": "yellow",
}


def _print_card(card: TimelineCard) -> None:
    data = card.data
    at = f"[dim]{card.video_ms / 1000:6.1f}s[/dim]"
    label = escape(card.block_label or "")
    if card.kind == "block":
        if data.get("event") == "started":
            err.print(f"{at} [bold]▶ {label}[/bold] [dim]({data.get('type')})[/dim]")
        else:
            style = "green" if card.status == "completed" else "red"
            err.print(
                f"{at} [{style}]■ {label} {card.status}[/{style}] [dim]{card.duration_ms} ms[/dim]"
            )
    elif card.kind == "action":
        target = f" {escape(str(data['target']))}" if data.get("target") else ""
        value = f" = {escape(str(data['value']))}" if data.get("value") else ""
        if card.status == "failed":
            err.print(
                f"{at}   [red]✗ {data.get('verb')}{target}: {escape(str(data.get('error')))}[/red]"
            )
        else:
            err.print(
                f"{at}   ✓ {data.get('verb')}{target}{value} [dim]{card.duration_ms} ms[/dim]"
            )
    elif card.kind == "thought":
        err.print(f"{at}   [italic dim]{escape(str(data.get('text')))}[/italic dim]")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    workflow = load_workflow_file(Path(args.flow))
    overrides = _parse_params(args.param or [])
    services = open_services(settings)
    try:
        overrides = await upload_local_files(services, workflow, overrides)
        inputs = inputs_for(services, workflow, overrides)
        # This process runs it: no worker is woken. Status changes are still announced, so a
        # `glassbox serve` on the same PostgreSQL database shows the run live.
        run = await queue_run(
            services, workflow, inputs, RunOptions(source=RunSource.cli), wake_workers=False
        )
        err.print(f"[bold]{escape(run.title)}[/bold] [dim]{run.id}[/dim]")
        listeners: list[CardListener] = [] if args.quiet else [_print_card]
        async with runner_env(services, listeners) as env:
            status = await run_now(services, env, run, workflow, inputs)
        async with services.db.session() as session:
            row = await get_run(session=session, run_id=run.id)
            artifacts = await list_artifacts(session=session, run_id=run.id)
    finally:
        await services.close()
    record = run_record(row, artifacts)
    style = _STATUS_STYLE.get(status.value, "white")
    err.print(
        f"[{style}]{status.value}[/{style}]"
        + (f": {escape(row.failure_reason)}" if row.failure_reason else "")
    )
    if row.extracted_information is not None:
        err.print(f"extracted: {escape(json.dumps(row.extracted_information, ensure_ascii=False))}")
    _print_record_location(services, row.id, artifacts)
    if args.json:
        sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    return EXIT_OK if status is RunStatus.completed else EXIT_RUN_NOT_COMPLETED


def _print_record_location(services: Services, run_id: str, artifacts: list[Any]) -> None:
    where = services.storage.storage_url or str((services.storage.data_dir / "artifacts").resolve())
    err.print(
        f"record: run {run_id} in {services.storage.resolved_database_url}; artifacts in {where}"
    )
    for artifact in artifacts:
        if artifact.kind != "screenshot":
            name = escape(artifact.name)
            err.print(
                f"  [dim]{artifact.id}[/dim] {artifact.kind:9} {name} ({artifact.size} bytes)"
            )
    shots = sum(1 for a in artifacts if a.kind == "screenshot")
    if shots:
        err.print(f"  … and {shots} screenshots; `glassbox artifact ID -o FILE` writes one out")


async def _artifact(args: argparse.Namespace, settings: Settings) -> int:
    services = open_services(settings)
    try:
        async with services.db.session() as session:
            artifact = await get_artifact(session=session, artifact_id=args.id)
    finally:
        await services.close()
    chunks = services.store.open(artifact.key)
    if args.output == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return EXIT_OK
    target = Path(args.output or artifact.name)
    with target.open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
    err.print(f"wrote {escape(str(target))} ({artifact.size} bytes, {artifact.content_type})")
    return EXIT_OK


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app

    service = settings.service
    host = args.host or service.host
    port = service.port if args.port is None else args.port
    workers = service.workers if args.workers is None else args.workers
    service = service.model_copy(update={"host": host, "port": port, "workers": workers})
    settings = replace(settings, service=service)
    from api.auth import install_access_log_redaction

    install_access_log_redaction()
    app = create_app(settings)
    err.print(f"Glassbox on http://{host}:{port} ({workers} in-process worker(s))")
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
    return EXIT_OK


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from api.app import worker_options
    from services.schedules import Scheduler
    from services.workers import Worker, WorkerPool, open_when_reachable, salvage_spools

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Started while the database is down: waits for it (logged), never exits for it.
    services = await open_when_reachable(settings, stop)
    if services is None:
        return EXIT_OK
    try:
        worker = Worker(services, worker_options(settings.service, args.concurrency))
        if args.salvage:  # once: end runs whose worker vanished, store their spools, exit
            await worker.reap()
            for found in await salvage_spools(services):
                err.print(
                    f"{found.run_id}: stored {', '.join(found.stored) or 'nothing'}"
                    + (f"; still missing: {'; '.join(found.failed)}" if found.failed else "")
                )
            return EXIT_OK
        # Database outages are waited out; a worker whose browser died is replaced.
        pool = WorkerPool(services, worker_options(settings.service, args.concurrency), 1)
        err.print(f"worker: concurrency {pool.options.concurrency}")
        # Workers fire due schedules too (each fire time makes one run, whoever fires it).
        scheduler = Scheduler(services, poll_s=settings.service.scheduler_poll_s)
        await asyncio.gather(*pool.start(stop), scheduler.run_forever(stop))
    finally:
        await services.close()
    return EXIT_OK


async def _apikey(args: argparse.Namespace, settings: Settings) -> int:
    from api.auth import cli_create, cli_list, cli_revoke

    services = open_services(settings)
    try:
        if args.apikey_command == "create":
            sys.stdout.write(await cli_create(services.db, args.name) + "\n")
        elif args.apikey_command == "list":
            for key in await cli_list(services.db):
                sys.stdout.write(json.dumps(key) + "\n")
        else:
            await cli_revoke(services.db, args.id)
            err.print(f"revoked {escape(args.id)}")
    finally:
        await services.close()
    return EXIT_OK


async def _schedule(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from api.schedules import record
    from services import schedules
    from services.schedules import ScheduleSpec

    services = open_services(settings)
    try:
        command = args.schedule_command
        if command == "list":
            for schedule in await schedules.list_schedules(services, args.workflow):
                sys.stdout.write(json.dumps(await record(services, schedule)) + "\n")
            return EXIT_OK
        if command == "delete":
            await schedules.delete_schedule(services, args.id)
            err.print(f"deleted {escape(args.id)}")
            return EXIT_OK
        if command in ("enable", "disable"):
            spec = ScheduleSpec(enabled=command == "enable")
            schedule = await schedules.update_schedule(services, args.id, spec)
        else:
            at = None
            if args.at:
                try:
                    at = datetime.fromisoformat(args.at)
                except ValueError:
                    raise ValidationFailed("--at", f"not an ISO 8601 time: {args.at!r}") from None
            spec = ScheduleSpec(
                cron=args.cron,
                interval_s=args.every,
                at=at,
                timezone=args.timezone,
                parameters=_parse_params(args.param or []),
                catch_up=args.catch_up,
                title=args.title,
            )
            schedule = await schedules.create_schedule(services, args.workflow_id, spec)
        sys.stdout.write(json.dumps(await record(services, schedule)) + "\n")
        next_at = schedule.next_fire_at.isoformat() if schedule.next_fire_at else "never"
        err.print(f"{escape(schedule.id)}: next run at {escape(next_at)}")
    finally:
        await services.close()
    return EXIT_OK


def _db(args: argparse.Namespace, settings: Settings) -> int:
    database_url = settings.storage.resolved_database_url
    migrate.upgrade(database_url)
    err.print(f"database at the newest schema: {database_url}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassbox", description="Run browser workflows and keep a complete record."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a workflow file in this process")
    run.add_argument("flow", help="workflow file (YAML or JSON)")
    run.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="set a parameter (repeatable); a file parameter takes @PATH",
    )
    run.add_argument("--json", action="store_true", help="print the run record as JSON on stdout")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    artifact = sub.add_parser("artifact", help="write an artifact's bytes")
    artifact.add_argument("id", help="artifact id (art_…)")
    artifact.add_argument(
        "-o", "--output", help="file to write, or - for stdout (default: the artifact's name)"
    )

    serve = sub.add_parser("serve", help="the API and in-process workers")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers", type=int, help="in-process workers (default 1; 0 for an API-only process)"
    )

    worker = sub.add_parser("worker", help="a worker process that claims queued runs")
    worker.add_argument("--concurrency", type=int, help="runs executed at once (default 1)")
    worker.add_argument(
        "--salvage",
        action="store_true",
        help="store the spools left behind by dead workers and outages, then exit",
    )

    apikey = sub.add_parser("apikey", help="API keys (X-API-Key)")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("name", help="what the key is for")
    apikey_sub.add_parser("list", help="list keys (never their secrets)")
    revoke = apikey_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id", help="key id (key_…)")

    schedule = sub.add_parser("schedule", help="saved workflows that run by themselves")
    schedule_sub = schedule.add_subparsers(dest="schedule_command", required=True)
    add = schedule_sub.add_parser("add", help="schedule a saved workflow")
    add.add_argument("workflow_id", help="saved workflow id (wf_…)")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='a cron expression, e.g. "0 9 * * 1-5"')
    when.add_argument("--every", type=int, metavar="SECONDS", help="a fixed interval")
    when.add_argument("--at", help="once, at this ISO 8601 time")
    add.add_argument("--timezone", help="IANA time zone for --cron and --at (default UTC)")
    add.add_argument(
        "--param", action="append", metavar="NAME=VALUE", help="a parameter of the runs"
    )
    add.add_argument("--title", help="the runs' title")
    add.add_argument(
        "--catch-up", choices=["skip", "run_once"], help="after missed fire times (default skip)"
    )
    listing = schedule_sub.add_parser("list", help="list schedules (JSON lines)")
    listing.add_argument("--workflow", help="only this workflow's")
    for verb, text in (("enable", "start"), ("disable", "stop"), ("delete", "delete")):
        one = schedule_sub.add_parser(verb, help=f"{text} a schedule")
        one.add_argument("id", help="schedule id (sch_…)")

    schema = sub.add_parser("schema", help="print a JSON Schema (editors validate with it)")
    schema.add_argument("name", choices=["workflow"], help="workflow: the workflow format")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations")
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> None:
    """`glassbox ARGV…`; `settings` default to the environment's, loaded once here."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "schema":  # needs no settings, database or storage
        sys.stdout.write(json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False) + "\n")
        raise SystemExit(EXIT_OK)
    try:
        settings = settings or Settings.load()
        if args.command == "run":
            code = asyncio.run(_run(args, settings))
        elif args.command == "artifact":
            code = asyncio.run(_artifact(args, settings))
        elif args.command == "serve":
            code = _serve(args, settings)
        elif args.command == "worker":
            code = asyncio.run(_worker(args, settings))
        elif args.command == "apikey":
            code = asyncio.run(_apikey(args, settings))
        elif args.command == "schedule":
            code = asyncio.run(_schedule(args, settings))
        else:
            code = _db(args, settings)
    except ValidationFailed as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        code = EXIT_REFUSED
    except NotFound as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        code = EXIT_RUN_NOT_COMPLETED
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        code = EXIT_REFUSED
    except GlassboxError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        code = EXIT_RUN_NOT_COMPLETED
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
