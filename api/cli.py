"""The `glassbox` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from services.client import TERMINAL, Client, Conflict
from storage.errors import ConfigurationError, GlassboxError, NotFound, ValidationFailed

if TYPE_CHECKING:  # the rest is imported where used: `--server` commands start in a blink
    from services.backends import Services
    from services.runs import CardListener
    from services.settings import Settings
    from storage.models import TimelineCard

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
    from api.records import card_record

    print_card(card_record(card))


def print_card(card: dict[str, Any], console: Console = err) -> None:
    """One timeline card (its API record) as a line of progress."""
    at = f"[dim]{(card.get('video_ms') or 0) / 1000:6.1f}s[/dim]"
    label = escape(card.get("block_label") or "")
    kind, status = card.get("kind"), card.get("status")
    if kind == "block":
        if card.get("event") == "started":
            console.print(f"{at} [bold]▶ {label}[/bold] [dim]({card.get('type')})[/dim]")
        else:
            style = "green" if status == "completed" else "red"
            console.print(
                f"{at} [{style}]■ {label} {status}[/{style}] "
                f"[dim]{card.get('duration_ms')} ms[/dim]"
            )
    elif kind == "action":
        target = f" {escape(str(card['target']))}" if card.get("target") else ""
        value = f" = {escape(str(card['value']))}" if card.get("value") else ""
        verb = card.get("verb")
        if status == "failed":
            console.print(f"{at}   [red]✗ {verb}{target}: {escape(str(card.get('error')))}[/red]")
        else:
            console.print(f"{at}   ✓ {verb}{target}{value} [dim]{card.get('duration_ms')} ms[/dim]")
    elif kind == "thought":
        console.print(f"{at}   [italic dim]{escape(str(card.get('text')))}[/italic dim]")
    elif kind == "divergence":
        console.print(f"{at}   [yellow]≠ {escape(str(card.get('expected') or ''))}[/yellow]")


def _print_outcome(record: dict[str, Any]) -> int:
    """The run's ending on stderr, its record on stdout with --json; the exit status."""
    status = record["status"]
    style = _STATUS_STYLE.get(status, "white")
    reason = record.get("failure_reason")
    err.print(f"[{style}]{status}[/{style}]" + (f": {escape(reason)}" if reason else ""))
    if record.get("extracted_information") is not None:
        extracted = json.dumps(record["extracted_information"], ensure_ascii=False)
        err.print(f"extracted: {escape(extracted)}")
    return EXIT_OK if status == "completed" else EXIT_RUN_NOT_COMPLETED


def _follow(client: Client, run_id: str, *, cards: bool, console: Console = err) -> None:
    """Until the run ends: its cards as they come (with `cards`), from the event stream."""
    for event in client.events(run_id):
        if event.event == "card" and cards:
            print_card(event.data, console)


def _remote_run(args: argparse.Namespace, server: str) -> int:
    from services.workflows import workflow_document

    document, file_names = workflow_document(Path(args.flow))
    parameters = _parse_params(args.param or [])
    with _client(args, server) as client:
        for name in file_names:
            value = parameters.get(name)
            if isinstance(value, str) and not value.startswith("upl_"):
                path = Path(value.removeprefix("@")).expanduser()
                parameters[name] = client.upload(path, f"parameters.{name}")["id"]
        run = client.create_run(document, parameters)
        err.print(f"[bold]{escape(run['title'])}[/bold] [dim]{run['id']}[/dim] on {server}")
        _follow(client, run["id"], cards=args.follow and not args.quiet)
        record = client.get_run(run["id"])
    code = _print_outcome(record)
    _print_remote_location(server, record)
    if args.json:
        sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    return code


def _print_remote_location(server: str, record: dict[str, Any]) -> None:
    err.print(f"record: run {record['id']} at {server}/runs/{record['id']}")
    artifacts = record.get("artifacts") or []
    for artifact in artifacts:
        if artifact["kind"] != "screenshot":
            name = escape(artifact["name"])
            err.print(
                f"  [dim]{artifact['id']}[/dim] {artifact['kind']:9} {name} "
                f"({artifact['size']} bytes)"
            )
    shots = sum(1 for a in artifacts if a["kind"] == "screenshot")
    if shots:
        err.print(f"  … and {shots} screenshots; `glassbox artifact ID -o FILE` writes one out")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from api.records import run_record
    from services.backends import open_services
    from services.runs import RunOptions, inputs_for, queue_run, run_now, runner_env
    from services.uploads import upload_local_files
    from services.workflows import load_workflow_file
    from storage.artifacts import list_artifacts
    from storage.runs import get_run
    from storage.status import RunSource, RunStatus

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
    code = _print_outcome(record)
    _print_record_location(services, row.id, artifacts)
    if args.json:
        sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    assert (code == EXIT_OK) == (status is RunStatus.completed)
    return code


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
    from services.backends import open_services
    from storage.artifacts import get_artifact

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


def _remote_artifact(args: argparse.Namespace, server: str) -> int:
    with _client(args, server) as client:
        artifact = client.get_artifact(args.id)
        if args.output == "-":
            out = sys.stdout.buffer
            for chunk in client.artifact_chunks(args.id):
                out.write(chunk)
            out.flush()
            return EXIT_OK
        target = Path(args.output or Path(artifact["name"]).name)
        with target.open("wb") as fh:
            for chunk in client.artifact_chunks(args.id):
                fh.write(chunk)
    err.print(f"wrote {escape(str(target))} ({artifact['size']} bytes, {artifact['content_type']})")
    return EXIT_OK


def _client(args: argparse.Namespace, server: str) -> Client:
    return Client(server, args.api_key or os.environ.get("GLASSBOX_API_KEY") or None)


def _runs(args: argparse.Namespace, server: str) -> int:
    """`glassbox --server URL runs list|show|cancel|rerun|logs`."""
    command = args.runs_command
    with _client(args, server) as client:
        if command == "list":
            page = client.list_runs(status=args.status, q=args.q, limit=args.limit)
            if args.json:
                sys.stdout.write(json.dumps(page, ensure_ascii=False, indent=2) + "\n")
                return EXIT_OK
            for run in page["items"]:
                sys.stdout.write(
                    f"{run['id']}  {run['status']:<11} {run['created_at']}  {run['title']}\n"
                )
            return EXIT_OK
        if command == "show":
            record = client.get_run(args.id)
            if args.json:
                sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
            else:
                _show(record)
            return EXIT_OK
        if command == "cancel":
            try:
                record = client.cancel_run(args.id)
            except Conflict as exc:
                err.print(f"[red]error:[/red] {escape(str(exc))}")
                return EXIT_RUN_NOT_COMPLETED
            err.print(f"{escape(args.id)}: {record['status']}")
            if args.json:
                sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
            return EXIT_OK
        if command == "rerun":
            run = client.rerun(args.id, _parse_params(args.param or []) or None)
            err.print(f"[bold]{escape(run['title'])}[/bold] [dim]{run['id']}[/dim] on {server}")
            if not args.follow:
                if args.json:
                    sys.stdout.write(json.dumps(run, ensure_ascii=False, indent=2) + "\n")
                else:
                    sys.stdout.write(run["id"] + "\n")
                return EXIT_OK
            _follow(client, run["id"], cards=True)
            record = client.get_run(run["id"])
            code = _print_outcome(record)
            if args.json:
                sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
            return code
        # logs: the cards so far, or (--follow) every card until the run ends
        out = Console(highlight=False, soft_wrap=True)
        if args.follow:
            _follow(client, args.id, cards=True, console=out)
        else:
            for card in client.timeline(args.id):
                print_card(card, out)
        record = client.get_run(args.id)
        if record["status"] in TERMINAL:
            style = _STATUS_STYLE.get(record["status"], "white")
            out.print(f"[{style}]{record['status']}[/{style}]")
        return EXIT_OK


def _show(record: dict[str, Any]) -> None:
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold]{escape(record['title'])}[/bold] {record['id']}")
    style = _STATUS_STYLE.get(record["status"], "white")
    out.print(f"status: [{style}]{record['status']}[/{style}]  source: {record['source']}")
    for name in ("created_at", "started_at", "finished_at", "failure_reason"):
        if record.get(name):
            out.print(f"{name}: {escape(str(record[name]))}")
    if record.get("extracted_information") is not None:
        extracted = json.dumps(record["extracted_information"], ensure_ascii=False)
        out.print(f"extracted: {escape(extracted)}")
    for artifact in record.get("artifacts") or []:
        out.print(f"  {artifact['id']} {artifact['kind']:10} {escape(artifact['name'])}")


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
    from services.backends import open_services

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
    from services.backends import open_services
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
    from storage import migrate

    database_url = settings.storage.resolved_database_url
    migrate.upgrade(database_url)
    err.print(f"database at the newest schema: {database_url}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassbox", description="Run browser workflows and keep a complete record."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--server",
        metavar="URL",
        help="a remote Glassbox (e.g. http://host:8000) for run, artifact and runs "
        "(default: GLASSBOX_SERVER)",
    )
    parser.add_argument("--api-key", metavar="KEY", help="its API key (default: GLASSBOX_API_KEY)")
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
    run.add_argument(
        "--follow",
        action="store_true",
        help="with --server: show the run's cards as they come (a local run always does)",
    )

    artifact = sub.add_parser("artifact", help="write an artifact's bytes")
    artifact.add_argument("id", help="artifact id (art_…)")
    artifact.add_argument(
        "-o", "--output", help="file to write, or - for stdout (default: the artifact's name)"
    )

    runs = sub.add_parser("runs", help="runs on a remote Glassbox (--server URL)")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", help="runs, newest first")
    listing.add_argument("--status", help="one status or several, comma-separated")
    listing.add_argument("--q", help="text in the title or the run id")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="the API's page as JSON")
    show = runs_sub.add_parser("show", help="a run's record")
    show.add_argument("id", help="run id (run_…)")
    show.add_argument("--json", action="store_true", help="the run record as JSON")
    cancel = runs_sub.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("id", help="run id (run_…)")
    cancel.add_argument("--json", action="store_true", help="the run record as JSON")
    rerun = runs_sub.add_parser("rerun", help="run again with the same inputs")
    rerun.add_argument("id", help="run id (run_…)")
    rerun.add_argument("--param", action="append", metavar="NAME=VALUE", help="change a parameter")
    rerun.add_argument(
        "--follow", action="store_true", help="show its cards until it ends; exit as run does"
    )
    rerun.add_argument("--json", action="store_true", help="the new run's record as JSON")
    logs = runs_sub.add_parser("logs", help="a run's timeline cards")
    logs.add_argument("id", help="run id (run_…)")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing cards until the run ends"
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


REMOTE_COMMANDS = frozenset({"run", "artifact", "runs"})
"""What `--server URL` (or GLASSBOX_SERVER) sends to a remote Glassbox's REST API."""


def _remote(args: argparse.Namespace, server: str) -> int:
    if args.command == "run":
        return _remote_run(args, server)
    if args.command == "artifact":
        return _remote_artifact(args, server)
    return _runs(args, server)


def main(argv: list[str] | None = None, settings: Settings | None = None) -> None:
    """`glassbox ARGV…`; `settings` default to the environment's, loaded once here."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "schema":  # needs no settings, database or storage
        from services.workflows import workflow_json_schema

        sys.stdout.write(json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False) + "\n")
        raise SystemExit(EXIT_OK)
    try:
        server = args.server or os.environ.get("GLASSBOX_SERVER") or None
        if args.command in REMOTE_COMMANDS and server:
            raise SystemExit(_remote(args, server))
        if args.command == "runs":
            raise ValidationFailed(
                "--server", "glassbox runs talks to a server: give --server URL or GLASSBOX_SERVER"
            )
        if args.server:
            raise ValidationFailed(
                "--server", f"only {', '.join(sorted(REMOTE_COMMANDS))} talk to a server"
            )
        from services.settings import Settings

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
