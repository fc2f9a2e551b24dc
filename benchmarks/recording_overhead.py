"""Recording overhead: the same workflow fully recorded by Glassbox vs. bare Playwright.

    .venv/bin/python benchmarks/recording_overhead.py [--rounds N] [--searches K]

Starts the demo site on a free port and builds one multi-step workflow: K searches on
/shop/search.html (goto, fill #q, select #sort, check/uncheck #in-stock, click Search,
wait_for .result, assert_text on #summary), then an extract block -- 7*K + 1 actions.

Variants, all on ONE Chromium launched once (by Glassbox's own `runner_env`), each run in a
fresh browser context of its own:

* recorded  -- Glassbox in-process, as the CLI does it (queue_run, then run_now with the
  RunnerSettings from the environment: by default video, trace, HAR, screenshots, console,
  code). Timed from the run_now call to its return: the run is then in its terminal status and
  everything is finalized (video encoded and remuxed, trace/HAR masked and stored, code stored).
  queue_run (creating the run row before it runs) is not timed.
* bare      -- the same steps written directly with Playwright's async API: the same locators
  and the same waits as the generated replay script, no recording of any kind. Timed from
  new_context to the context being closed.
* playwright-recording (unless --no-playwright-recording) -- the bare steps with Playwright's
  own recording: record_video_dir + tracing (screenshots, snapshots) + record_har_path
  (content embedded, as Glassbox does). Timed like bare, including tracing.stop and the video
  being written on close. The reference figure for "what recording costs anyway".

Rounds alternate the variants (the order rotates every round) after one warm-up run of each.
Printed: machine, settings, each round's times and load, the medians, the median of the
per-round ratios recorded/bare (the headline; target <= 1.15), the ratio of the medians, the
per-action overhead in ms, and a phase breakdown (context start / actions / finalization).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # examples/ is not an installed package

# Settings that would send the record elsewhere than our temporary data directory.
for _name in ("GLASSBOX_DATA_DIR", "GLASSBOX_DATABASE_URL", "GLASSBOX_STORAGE_URL"):
    os.environ.pop(_name, None)

from playwright.async_api import Browser, BrowserContext  # noqa: E402
from playwright.async_api import Error as PlaywrightError  # noqa: E402

from examples.site_server import SiteServer, load_products, search_products  # noqa: E402
from runner.extract import parse_number  # noqa: E402
from runner.media import find_ffmpeg  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from runner.templating import resolve_inputs  # noqa: E402
from runner.workflow import parse_workflow  # noqa: E402
from services.backends import Services, open_services  # noqa: E402
from services.runs import RunOptions, queue_run, run_now, runner_env  # noqa: E402
from services.settings import Settings  # noqa: E402
from storage.artifacts import list_artifacts  # noqa: E402
from storage.runs import get_run  # noqa: E402
from storage.settings import StorageSettings  # noqa: E402
from storage.status import RunSource, RunStatus  # noqa: E402
from storage.timeline import list_cards  # noqa: E402

TARGET = 1.15
QUIET_CORES = 0.25  # other processes' average CPU use above which a measurement is noisy
REFERENCE = 1.14  # Playwright's own video + trace + HAR on the reference machine
WAIT_RESULTS_MS = 5000

RECORDED, BARE, PW_REC = "recorded", "bare", "playwright-recording"
SHORT = {RECORDED: "R", BARE: "B", PW_REC: "P"}

# (query, sort, in stock only): every one finds at least two products, so "N results" holds.
SEARCHES = [
    ("lamp", "price", True),
    ("bulb", "name", False),
    ("desk", "relevance", False),
    ("lamps", "name", True),
    ("bulbs", "price", True),
    ("table lamp", "relevance", False),
    ("a", "price", True),
    ("led", "relevance", False),
]


# --- the workflow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    query: str
    sort: str
    in_stock: bool
    summary: str  # the text #summary shows once the results are in
    cheapest: str  # the first result's name
    prices: list[float]


def plan_searches(count: int) -> list[Search]:
    products = load_products()
    plan: list[Search] = []
    for i in range(count):
        query, sort, in_stock = SEARCHES[i % len(SEARCHES)]
        if i >= len(SEARCHES):
            in_stock = not in_stock  # later rounds of the list differ in the checkbox
        found = search_products(products, query, sort, in_stock)
        if not found:
            raise SystemExit(f"search {query!r} finds nothing; fix SEARCHES")
        noun = "result" if len(found) == 1 else "results"
        plan.append(
            Search(
                query=query,
                sort=sort,
                in_stock=in_stock,
                summary=f'{len(found)} {noun} for "{query}"',
                cheapest=found[0].name,
                prices=[p.price for p in found],
            )
        )
    return plan


def build_definition(search_url: str, plan: list[Search]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for i, s in enumerate(plan, start=1):
        blocks.append(
            {
                "label": f"search-{i}",
                "type": "action",
                "steps": [
                    {"goto": search_url},
                    {"fill": {"selector": "#q", "value": s.query}},
                    {"select": {"selector": "#sort", "value": s.sort}},
                    {"check": {"selector": "#in-stock", "checked": s.in_stock}},
                    {"click": {"role": "button", "name": "Search"}},
                    {
                        "wait_for": {
                            "selector": ".result",
                            "state": "visible",
                            "timeout_ms": WAIT_RESULTS_MS,
                        }
                    },
                    {"assert_text": {"selector": "#summary", "text": s.summary}},
                ],
            }
        )
    blocks.append(
        {
            "label": "products",
            "type": "extract",
            "fields": {
                "cheapest": {"selector": ".result .name", "first": True},
                "prices": {"selector": ".result .price", "all": True, "as": "number"},
            },
        }
    )
    return {"title": f"Benchmark: {len(plan)} searches", "timeout_s": 900, "blocks": blocks}


def action_count(plan: list[Search]) -> int:
    return 7 * len(plan) + 1


def check_extracted(variant: str, data: Any, plan: list[Search]) -> None:
    last = plan[-1]
    expected = {"cheapest": last.cheapest, "prices": last.prices}
    if data != expected:
        raise SystemExit(f"{variant}: extracted {data!r}, expected {expected!r}")


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Timing:
    variant: str
    total: float  # seconds
    start: float  # until the first action could begin (context, page, recording started)
    actions: float  # the steps themselves
    finish: float  # after the last action until done (recording finalized, context closed)
    cpu: float = float("nan")  # CPU seconds of all processes (Python, driver, Chromium, ffmpeg)
    others: float = float("nan")  # cores used meanwhile by processes not ours (interference)


def _seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


# --- the variants ---------------------------------------------------------------------------


class Recorded:
    """Glassbox, exactly as the CLI runs a workflow in-process."""

    def __init__(self, services: Services, env: Any, definition: dict[str, Any]) -> None:
        self.services = services
        self.env = env
        self.workflow = parse_workflow(definition)
        self.inputs = resolve_inputs(self.workflow, {}, allowed_schemes=services.runner.url_schemes)
        self.last_artifacts: list[tuple[str, int]] = []

    async def __call__(self, plan: list[Search]) -> Timing:
        run = await queue_run(
            self.services,
            self.workflow,
            self.inputs,
            RunOptions(source=RunSource.cli),
            wake_workers=False,
        )
        began = datetime.now(UTC)
        t0 = time.perf_counter()
        status = await run_now(self.services, self.env, run, self.workflow, self.inputs)
        total = time.perf_counter() - t0
        ended = datetime.now(UTC)
        async with self.services.db.session() as session:
            row = await get_run(session=session, run_id=run.id)
            cards = await list_cards(session=session, run_id=run.id)
            artifacts = await list_artifacts(session=session, run_id=run.id)
        if status is not RunStatus.completed:
            raise SystemExit(f"recorded run ended {status.value}: {row.failure_reason}")
        check_extracted(RECORDED, row.extracted_information, plan)
        self.last_artifacts = [(a.kind, a.size) for a in artifacts]
        # Phases from the record itself: the first card is written when the first block starts
        # (browser context, page, screencast and tracing are up); the last when it ends.
        if not cards:
            nan = float("nan")
            return Timing(RECORDED, total, nan, nan, nan)
        first, last = cards[0].created_at, cards[-1].created_at
        start = _seconds(began, first)
        actions = _seconds(first, last)
        return Timing(RECORDED, total, start, actions, max(0.0, _seconds(last, ended)))


class Bare:
    """The same steps in plain Playwright; optionally with Playwright's own recording."""

    def __init__(
        self,
        browser: Browser,
        settings: RunnerSettings,
        search_url: str,
        *,
        recording: bool = False,
        video: bool = True,
        spool: Path | None = None,
    ) -> None:
        self.browser = browser
        self.settings = settings
        self.search_url = search_url
        self.recording = recording
        self.video = video
        self.spool = spool
        self.count = 0
        self.last_files: list[tuple[str, int]] = []

    async def __call__(self, plan: list[Search]) -> Timing:
        s = self.settings
        options: dict[str, Any] = {
            "viewport": {"width": s.viewport_width, "height": s.viewport_height},
            "accept_downloads": True,
        }
        out: Path | None = None
        if self.recording:
            assert self.spool is not None
            self.count += 1
            out = self.spool / f"pw-{self.count}"
            out.mkdir(parents=True)
            options["record_har_path"] = str(out / "network.har")
            options["record_har_content"] = "embed"
            if self.video:
                options["record_video_dir"] = str(out / "video")
        t0 = time.perf_counter()
        context = await self.browser.new_context(**options)
        try:
            context.set_default_timeout(s.step_timeout_ms)
            if self.recording:
                await context.tracing.start(screenshots=True, snapshots=True, sources=False)
            page = await context.new_page()
            t1 = time.perf_counter()
            data = await self.steps(context, plan)
            t2 = time.perf_counter()
            if self.recording:
                assert out is not None
                await context.tracing.stop(path=str(out / "trace.zip"))
        finally:
            await context.close()
        if self.recording and self.video and page.video is not None:
            await page.video.path()  # written by now: close() waits for the video
        t3 = time.perf_counter()
        check_extracted(self.name, data, plan)
        if out is not None:
            self.last_files = [
                (str(p.relative_to(out)), p.stat().st_size)
                for p in sorted(out.rglob("*"))
                if p.is_file()
            ]
            shutil.rmtree(out, ignore_errors=True)
        return Timing(self.name, t3 - t0, t1 - t0, t2 - t1, t3 - t2)

    @property
    def name(self) -> str:
        return PW_REC if self.recording else BARE

    async def steps(self, context: BrowserContext, plan: list[Search]) -> dict[str, Any]:
        page = context.pages[0]
        s = self.settings
        for search in plan:
            await page.goto(self.search_url, timeout=s.navigation_timeout_ms, wait_until="load")
            await page.locator("#q").fill(search.query)
            await page.locator("#sort").select_option(value=search.sort)
            await page.locator("#in-stock").set_checked(search.in_stock)
            await page.get_by_role("button", name="Search").click()
            await page.locator(".result").first.wait_for(state="visible", timeout=WAIT_RESULTS_MS)
            await (
                page.locator("#summary").get_by_text(search.summary).first.wait_for(state="visible")
            )
        names = page.locator(".result .name")
        cheapest = (await names.first.inner_text()).strip() if await names.count() else None
        prices = [
            parse_number(await e.inner_text()) for e in await page.locator(".result .price").all()
        ]
        return {"cheapest": cheapest, "prices": prices}


# --- Playwright's video needs its own ffmpeg ------------------------------------------------


def playwright_ffmpeg_revision() -> str | None:
    import playwright

    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    try:
        for entry in json.loads(browsers.read_text())["browsers"]:
            if entry["name"] == "ffmpeg":
                return str(entry["revision"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def playwright_registry() -> Path:
    configured = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if configured and configured != "0":
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ms-playwright"


def prepare_playwright_video(mode: str, scratch: Path, ffmpeg: str | None) -> str:
    """Where Playwright's video encoder comes from; may point PLAYWRIGHT_BROWSERS_PATH at a
    directory whose ffmpeg-<rev>/ffmpeg-linux is the system ffmpeg (Playwright cannot download
    its own build here). Must run before Playwright starts."""
    if mode == "off":
        return "off (trace + HAR only, --playwright-video off)"
    revision = playwright_ffmpeg_revision()
    registry = playwright_registry()
    own = registry / f"ffmpeg-{revision}" / "ffmpeg-linux" if revision else None
    if own is not None and own.exists():
        return f"Playwright's own ffmpeg ({own})"
    if mode == "native" or revision is None or not sys.platform.startswith("linux"):
        return "Playwright's own ffmpeg (missing: video will fail)"
    try:
        system = find_ffmpeg(ffmpeg)
    except RuntimeError:
        return "Playwright's own ffmpeg (missing, and no system ffmpeg to stand in)"
    shim = scratch / "ms-playwright"
    (shim / f"ffmpeg-{revision}").mkdir(parents=True)
    (shim / f"ffmpeg-{revision}" / "ffmpeg-linux").symlink_to(system)
    if registry.is_dir():  # keep any browsers Playwright installed visible
        for entry in registry.iterdir():
            if not (shim / entry.name).exists():
                (shim / entry.name).symlink_to(entry)
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(shim)
    return (
        f"system ffmpeg {system} standing in for Playwright's ffmpeg-{revision} "
        "(not installed; Playwright cannot download it here)"
    )


# --- CPU time -------------------------------------------------------------------------------


def tree_cpu_seconds() -> float | None:
    """CPU time (user + system) of this process and all its descendants, including the
    children they have reaped: Playwright's driver, Chromium and its renderers, ffmpeg.
    Linux only (None elsewhere). Differences of two readings are the CPU a run used."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        # utime, stime, cutime, cstime
        times[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0.0, [os.getpid()]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def system_busy_seconds() -> float | None:
    """CPU time the whole machine spent busy (all cores; steal included), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    values = [int(v) for v in fields[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


# --- machine --------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def mem_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    return "RAM unknown"


def load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def ffmpeg_version(ffmpeg: str | None) -> str:
    try:
        exe = find_ffmpeg(ffmpeg)
        first = subprocess.run(
            [exe, "-version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0]
        return f"{first.split(' Copyright')[0]} ({exe})"
    except Exception as exc:
        return f"unavailable ({exc})"


def playwright_version() -> str:
    from importlib.metadata import version

    return version("playwright")


# --- the benchmark --------------------------------------------------------------------------


@dataclass
class Results:
    rounds: list[dict[str, Timing]] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    orders: list[list[str]] = field(default_factory=list)


def fmt_s(value: float) -> str:
    return f"{value:7.2f} s"


def median_of(rounds: list[dict[str, Timing]], variant: str, attr: str = "total") -> float:
    return statistics.median(getattr(r[variant], attr) for r in rounds)


async def run_variant(
    run: Callable[[list[Search]], Awaitable[Timing]], plan: list[Search], settle_s: float
) -> Timing:
    gc.collect()
    await asyncio.sleep(settle_s)  # let the previous run's processes wind down
    busy_before, before, started = system_busy_seconds(), tree_cpu_seconds(), time.perf_counter()
    timing = await run(plan)
    busy_after, after, wall = (
        system_busy_seconds(),
        tree_cpu_seconds(),
        time.perf_counter() - started,
    )
    if before is not None and after is not None:
        timing.cpu = after - before
        if busy_before is not None and busy_after is not None:
            timing.others = max(0.0, (busy_after - busy_before) - timing.cpu) / wall
    return timing


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    plan = plan_searches(args.searches)
    actions = action_count(plan)
    scratch = Path(tempfile.mkdtemp(prefix="glassbox-bench-"))
    # The environment's settings, the record kept in the scratch directory.
    loaded = Settings.load(storage=StorageSettings(data_dir=scratch / "data"))
    settings = loaded.runner
    video_source = (
        prepare_playwright_video(args.playwright_video, scratch, settings.ffmpeg)
        if args.playwright_recording
        else "not run"
    )
    site = SiteServer().start()
    services = open_services(loaded)
    try:
        search_url = f"{site.url}shop/search.html"
        definition = build_definition(search_url, plan)
        async with runner_env(services) as env:
            browser = env.browser
            print_header(args, plan, actions, settings, browser, video_source)
            variants: dict[str, Callable[[list[Search]], Awaitable[Timing]]] = {
                RECORDED: Recorded(services, env, definition),
                BARE: Bare(browser, settings, search_url),
            }
            pw: Bare | None = None
            if args.playwright_recording:
                pw = Bare(
                    browser,
                    settings,
                    search_url,
                    recording=True,
                    video=args.playwright_video != "off",
                    spool=scratch / "playwright",
                )
                variants[PW_REC] = pw
            names = list(variants)

            # Warm-up: one of each, not counted. Also proves every variant works.
            print("\nwarm-up:", end="", flush=True)
            for name in names:
                try:
                    timing = await run_variant(variants[name], plan, args.settle)
                except PlaywrightError as exc:
                    if name != PW_REC or pw is None or not pw.video:
                        raise
                    first = str(exc).strip().splitlines()[0]
                    print(
                        f" [{PW_REC}: video failed: {first}; continuing with trace + HAR only]",
                        end="",
                    )
                    pw.video = False
                    video_source += " -- FAILED, so trace + HAR only"
                    timing = await run_variant(variants[name], plan, args.settle)
                print(f" {name} {timing.total:.2f} s", end="", flush=True)
            print()
            rec = variants[RECORDED]
            assert isinstance(rec, Recorded)
            kinds: dict[str, list[int]] = {}
            for kind, size in rec.last_artifacts:
                kinds.setdefault(kind, []).append(size)
            print(
                "recorded artifacts per run: "
                + ", ".join(
                    f"{k} x{len(v)} ({sum(v) / 1024:.0f} KiB)"
                    if len(v) > 1
                    else f"{k} ({v[0] / 1024:.0f} KiB)"
                    for k, v in sorted(kinds.items())
                )
            )
            if pw is not None:
                print(
                    f"{PW_REC} files per run: "
                    + ", ".join(f"{n} ({size / 1024:.0f} KiB)" for n, size in pw.last_files)
                    + ("" if pw.video else "   [NO VIDEO: trace + HAR only]")
                )

            results = Results()
            cols = "".join(f"{n + ' wall/cpu':>32}" for n in names)
            ratio_cols = "   rec/bare" + ("    pw/bare" if pw is not None else "")
            print(f"\nround  order{cols}{ratio_cols}   others  load1")
            for index in range(args.rounds):
                shift = index % len(names)
                order = names[shift:] + names[:shift]
                timings = {}
                for name in order:
                    timings[name] = await run_variant(variants[name], plan, args.settle)
                load1 = load()[0]
                results.rounds.append(timings)
                results.loads.append(load1)
                results.orders.append(order)
                line = f"{index + 1:>5}  {''.join(SHORT[n] for n in order):<5}"
                line += "".join(
                    f"{timings[n].total:>22.2f} s {timings[n].cpu:5.1f} s" for n in names
                )
                line += f"{timings[RECORDED].total / timings[BARE].total:>11.3f}"
                if pw is not None:
                    line += f"{timings[PW_REC].total / timings[BARE].total:>11.3f}"
                busy = max(t.others for t in timings.values())
                results.others.append(busy)
                line += f"   {busy:4.2f}c  {load1:5.2f}"
                print(line, flush=True)
        return summarize(args, results, names, actions, video_source, pw)
    finally:
        await services.close()
        site.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def print_header(
    args: argparse.Namespace,
    plan: list[Search],
    actions: int,
    settings: RunnerSettings,
    browser: Browser,
    video_source: str,
) -> None:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    l1, l5, l15 = load()
    print("Glassbox recording overhead: fully recorded run vs. bare Playwright")
    print(
        f"machine:  {cpu_model()}, {cores} cores ({usable} usable), {mem_total()}, "
        f"{platform.system()} {platform.release()}"
    )
    print(f"load:     {l1:.2f} {l5:.2f} {l15:.2f} (1/5/15 min) at start")
    print(
        f"software: Python {platform.python_version()}, Playwright {playwright_version()}, "
        f"Chromium {browser.version}, {ffmpeg_version(settings.ffmpeg)}"
    )
    recording = [
        f"video {settings.video_fps} fps {settings.video_size[0]}x{settings.video_size[1]} "
        f"(viewport {settings.viewport_width}x{settings.viewport_height}) "
        f"JPEG q{settings.video_quality}",
        "trace" if settings.trace else "NO trace",
        "HAR" if settings.har else "NO HAR",
        "screenshots, console, code",
    ]
    annotate = getattr(settings, "annotate_actions", None)  # newer settings
    if annotate is not None:
        recording.insert(1, f"action annotations: {annotate}")
    default = RunnerSettings.model_construct()
    changed = [
        name
        for name, value in settings.model_dump().items()
        if value != getattr(default, name, value)
    ]
    print(
        f"workflow: {len(plan)} searches x 7 steps + 1 extract = {actions} actions "
        f"({', '.join(s.query for s in plan)})"
    )
    print(
        f"recorded: {', '.join(recording)}"
        + (f"  [NON-DEFAULT: {', '.join(changed)} from GLASSBOX_* env]" if changed else "")
    )
    print(
        f"rounds:   {args.rounds} (+1 warm-up per variant), order rotated every round, "
        f"{args.settle:.1f} s pause before each run"
    )
    print(
        "fairness: one Chromium (launched once by Glassbox's runner_env) for all variants; every "
        "run opens and closes its own context. recorded = run_now() call until it returns "
        "(terminal status, all artifacts finalized and stored); bare = new_context() until the "
        "context is closed."
    )
    if args.playwright_recording:
        print(f"{PW_REC}: video via {video_source}")


def summarize(
    args: argparse.Namespace,
    results: Results,
    names: list[str],
    actions: int,
    video_source: str,
    pw: Bare | None,
) -> dict[str, Any]:
    rounds = results.rounds
    med = {n: median_of(rounds, n) for n in names}
    ratios = [r[RECORDED].total / r[BARE].total for r in rounds]
    ratio = statistics.median(ratios)
    ratio_of_medians = med[RECORDED] / med[BARE]
    per_action_ms = (med[RECORDED] - med[BARE]) / actions * 1000
    med_cpu = {n: median_of(rounds, n, "cpu") for n in names}
    print("median      " + "".join(f"{med[n]:>22.2f} s {med_cpu[n]:5.1f} s" for n in names))
    spread = {
        n: (max(r[n].total for r in rounds) - min(r[n].total for r in rounds)) / med[n]
        for n in names
    }
    print("spread (max-min)/median: " + ", ".join(f"{n} {spread[n]:.1%}" for n in names))
    verdict = "OK" if ratio <= TARGET else "ABOVE TARGET"
    print(
        f"\nmedian ratio recorded/bare: {ratio:.3f}  (target <= {TARGET:.2f}: {verdict}; "
        f"ratio of the medians {ratio_of_medians:.3f})"
    )
    pw_ratio = None
    if pw is not None:
        pw_ratio = statistics.median(r[PW_REC].total / r[BARE].total for r in rounds)
        what = "video + trace + HAR" if pw.video else "trace + HAR only (NO video)"
        print(
            f"median ratio {PW_REC}/bare: {pw_ratio:.3f}  (Playwright's own {what}; "
            f"reference ~{REFERENCE:.2f})"
        )
    print(
        f"per-action overhead: {per_action_ms:.1f} ms "
        f"(({med[RECORDED]:.2f} - {med[BARE]:.2f}) s / {actions} actions)"
    )
    cpu_ratio = statistics.median(r[RECORDED].cpu / r[BARE].cpu for r in rounds)
    print(
        "CPU per run (all processes: Python, Playwright driver, Chromium, ffmpeg): "
        + ", ".join(f"{n} {med_cpu[n]:.1f} s" for n in names)
        + f"; median ratio recorded/bare {cpu_ratio:.2f}"
    )
    print(
        "\nphases (medians): start = until the first action can run, "
        "actions = first to last action, finish = after the last action until done"
    )
    for n in names:
        start = median_of(rounds, n, "start")
        act = median_of(rounds, n, "actions")
        fin = median_of(rounds, n, "finish")
        print(f"  {n:<22} start {start:6.2f} s   actions {act:6.2f} s   finish {fin:6.2f} s")
    s_b, a_b, f_b = (median_of(rounds, BARE, a) for a in ("start", "actions", "finish"))
    s_r, a_r, f_r = (median_of(rounds, RECORDED, a) for a in ("start", "actions", "finish"))
    print(
        f"  recorded - bare        start {s_r - s_b:+6.2f} s   actions {a_r - a_b:+6.2f} s "
        f"  finish {f_r - f_b:+6.2f} s   (actions: {(a_r - a_b) / actions * 1000:+.1f} ms each)"
    )
    loads = results.loads
    l1, l5, l15 = load()
    print(
        f"\nload1 after each round (this benchmark's own processes included): "
        f"min {min(loads):.2f}, max {max(loads):.2f}; at end {l1:.2f} {l5:.2f} {l15:.2f}"
    )
    others = [o for o in results.others if o == o]  # not NaN
    if others:
        print(
            "others (cores busy with processes not belonging to this benchmark, worst variant "
            f"of the round): median {statistics.median(others):.2f}, max {max(others):.2f}"
        )
        if statistics.median(others) > QUIET_CORES:
            print(
                f"WARNING: other processes kept {statistics.median(others):.2f} cores busy (of "
                f"{os.cpu_count()}): the timings are inflated and noisy -- re-run on a quiet "
                "machine (or see benchmarks/README.md)."
            )
    summary = {
        "rounds": [{n: vars(t) for n, t in r.items()} for r in rounds],
        "orders": results.orders,
        "loads": loads,
        "others_cores": results.others,
        "medians_s": med,
        "median_ratio": ratio,
        "ratio_of_medians": ratio_of_medians,
        "playwright_recording_ratio": pw_ratio,
        "playwright_video": video_source if pw is not None else None,
        "per_action_overhead_ms": per_action_ms,
        "median_cpu_s": med_cpu,
        "cpu_ratio": cpu_ratio,
        "actions": actions,
        "target": TARGET,
    }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Time a fully recorded Glassbox run against the same steps in bare Playwright"
    )
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument(
        "--searches", type=int, default=6, help="searches in the workflow, 7 actions each (6)"
    )
    parser.add_argument(
        "--settle", type=float, default=1.0, help="pause before each run, seconds (1.0)"
    )
    parser.add_argument(
        "--no-playwright-recording",
        dest="playwright_recording",
        action="store_false",
        help="skip the third variant (Playwright's own video + trace + HAR)",
    )
    parser.add_argument(
        "--playwright-video",
        choices=("auto", "native", "off"),
        default="auto",
        help="Playwright's video encoder: its own ffmpeg, else the system's (auto); only its "
        "own (native); no video (off)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.searches < 1:
        parser.error("--rounds and --searches must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    summary = asyncio.run(benchmark(args))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
