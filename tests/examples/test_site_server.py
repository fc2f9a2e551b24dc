"""The demo site (examples/site_server.py) over real HTTP, and its pages in real Chromium."""

from __future__ import annotations

import csv
import io
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import (
    Browser,
    FilePayload,
    Locator,
    Page,
    expect,
)

from examples.site_server import SiteServer, load_products, search_products

REPO = Path(__file__).resolve().parents[2]
SHOP_YAML = REPO / "examples" / "shop.yaml"

# What examples/shop.yaml finds: in-stock lamps, cheapest first.
EXPECTED_NAMES = ["Glow Reading Lamp", "Nimbus Desk Lamp", "Aurora Table Lamp", "Beacon Floor Lamp"]
EXPECTED_PRICES = [24.99, 34.5, 49.99, 89.0]


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    server = SiteServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(site: SiteServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=10) as c:
        yield c


@pytest_asyncio.fixture
async def page(browser: Browser, site: SiteServer) -> AsyncIterator[Page]:
    context = await browser.new_context(accept_downloads=True)
    p = await context.new_page()
    p.set_default_timeout(10_000)
    requested: list[str] = []
    p.on("request", lambda request: requested.append(request.url))
    try:
        yield p
    finally:
        await context.close()
    outside = [u for u in requested if not u.startswith((site.url, "data:", "blob:"))]
    assert not outside, f"the demo site must stay local, but it requested {outside}"


# -- plain HTTP ----------------------------------------------------------------------------


def test_url_has_a_real_port_and_a_trailing_slash(site: SiteServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", site.url)
    assert site.port > 0


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("shop/", "Lumen Lamps"),
        ("shop/index.html", "Featured"),
        ("shop/search.html", 'placeholder="Search products"'),
        ("shop/cart.html", "Your cart"),
        ("login.html", 'type="password"'),
        ("upload.html", 'type="file"'),
        ("slow.html", "/hang"),
        ("popup.html", 'target="_blank"'),
        ("frame.html", '<iframe id="shop-frame"'),
        ("scroll.html", "You reached the bottom"),
        ("assets/style.css", "--accent"),
        ("shop/products.json", "Glow Reading Lamp"),
    ],
)
def test_static_pages(client: httpx.Client, path: str, needle: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert needle in response.text


def test_missing_page_is_404(client: httpx.Client) -> None:
    assert client.get("nope.html").status_code == 404


def test_pages_reference_nothing_external() -> None:
    for page_file in (REPO / "examples" / "site").rglob("*.html"):
        text = page_file.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), page_file


def test_login_with_the_right_password(client: httpx.Client) -> None:
    response = client.post("login", data={"username": "alice", "password": "hunter2-secret"})
    assert response.status_code == 200
    assert "Welcome, alice" in response.text
    assert "hunter2-secret" not in response.text


def test_login_with_a_wrong_password(client: httpx.Client) -> None:
    response = client.post("login", data={"username": "alice", "password": "hunter3"})
    assert response.status_code == 401
    assert "Invalid password" in response.text
    assert "Welcome" not in response.text


def test_login_escapes_the_username(client: httpx.Client) -> None:
    response = client.post("login", data={"username": "<b>x</b>", "password": "hunter2-secret"})
    assert "Welcome, &lt;b&gt;x&lt;/b&gt;" in response.text


def test_upload_multipart(client: httpx.Client) -> None:
    payload = bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n"
    files = {"file": ("lamp photo.png", payload, "image/png")}
    response = client.post("upload", files=files, data={"note": "hello"})
    assert response.status_code == 200
    assert f"Received lamp photo.png ({len(payload)} bytes)" in response.text


def test_upload_without_a_file_is_rejected(client: httpx.Client) -> None:
    assert client.post("upload", data={"note": "hello"}).status_code == 400


def test_export_csv(client: httpx.Client) -> None:
    response = client.get("shop/export.csv", params={"q": "lamp", "sort": "price", "in_stock": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="results.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["name"] for r in rows] == EXPECTED_NAMES
    assert [float(r["price"]) for r in rows] == EXPECTED_PRICES
    assert {r["in_stock"] for r in rows} == {"yes"}


def test_export_csv_without_stock_filter_includes_sold_out(client: httpx.Client) -> None:
    response = client.get("shop/export.csv", params={"q": "lamp", "sort": "price"})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[0] == {"name": "Pocket Clip Lamp", "price": "12.99", "in_stock": "no"}
    assert len(rows) == 6


def test_search_logic() -> None:
    products = load_products()
    assert 8 <= len(products) <= 10
    assert [p.name for p in search_products(products, "desk lamp")] == ["Nimbus Desk Lamp"]
    bulbs = search_products(products, "BULB", "name")
    assert [p.name for p in bulbs] == [
        "Dusk Smart Bulb",
        "Ember Filament Bulb",
        "Halo LED Bulb 4-Pack",
    ]
    assert len(search_products(products, "")) == len(products)
    assert search_products(products, "chandelier") == []


def test_slow_answers_after_the_delay(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.get("slow", params={"ms": 300})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert "Waited 300 ms" in response.text
    assert 0.29 <= elapsed < 10


def test_slow_rejects_bad_input(client: httpx.Client) -> None:
    assert client.get("slow", params={"ms": "soon"}).status_code == 400


def test_hang_times_out_on_the_client_without_blocking_others(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.get("hang", timeout=0.5)
    # Another request is served while a second /hang is still open.
    with httpx.Client(base_url=client.base_url, timeout=0.5) as hanging, socket.socket() as raw:
        raw.connect((client.base_url.host, client.base_url.port or 80))
        raw.sendall(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert client.get("shop/", timeout=5).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            hanging.get("hang")


def test_stop_is_prompt_and_releases_hanging_connections() -> None:
    server = SiteServer().start()
    url = server.url
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.3)  # let the handler start waiting
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 10  # not held up by the /hang waiting for a reply
        raw.settimeout(2)
        try:
            leftover = raw.recv(1024)
        except ConnectionResetError:
            leftover = b""
        assert leftover == b"", "the /hang connection is closed without an answer"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1)
    server.stop()  # a second stop is harmless


def test_context_manager_and_restart() -> None:
    with SiteServer() as server:
        url = server.url
        assert httpx.get(url + "shop/", timeout=5).status_code == 200
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    try:
        assert httpx.get(server.url + "login.html", timeout=5).status_code == 200
    finally:
        server.stop()


# -- real Chromium -------------------------------------------------------------------------


def _template(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)], text)


def _target(page: Page, args: dict[str, Any]) -> Locator:
    exact = bool(args.get("exact", False))
    if "selector" in args:
        locator = page.locator(args["selector"])
    elif "role" in args:
        locator = page.get_by_role(args["role"], name=args.get("name"), exact=exact)
    else:
        locator = page.get_by_text(args["text"], exact=exact)
    return locator.nth(args["nth"]) if "nth" in args else locator


def _number(text: str) -> float:
    match = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    assert match, f"no number in {text!r}"
    return float(match.group())


async def test_shop_workflow_in_chromium(page: Page, site: SiteServer) -> None:
    """Play examples/shop.yaml step by step with plain Playwright calls."""
    workflow = yaml.safe_load(SHOP_YAML.read_text(encoding="utf-8"))
    values = {"url": site.url + "shop/"}
    values |= {name: str(spec["default"]) for name, spec in workflow["parameters"].items()}
    assert workflow["url"].endswith("/shop/")
    downloads = []

    for block in workflow["blocks"]:
        if block["type"] != "action":
            continue
        for step in block["steps"]:
            ((verb, args),) = step.items()
            if verb == "goto":
                await page.goto(_template(args, values) if isinstance(args, str) else args["url"])
                # Nothing is listed until a search ran, so waiting for results is meaningful.
                assert await page.locator(".result").count() == 0
            elif verb == "fill":
                await _target(page, args).fill(_template(args["value"], values))
            elif verb == "select":
                await _target(page, args).select_option(value=args["value"])
            elif verb == "check":
                await _target(page, args).check()
            elif verb == "click":
                url_before = page.url
                await _target(page, args).click()
                assert page.url == url_before, "searching must not navigate"
            elif verb == "wait_for":
                await page.locator(args["selector"]).first.wait_for(
                    state=args["state"], timeout=args["timeout_ms"]
                )
            elif verb == "assert_text":
                await expect(page.locator("body")).to_contain_text(args["text"])
                await expect(page.get_by_text(args["text"])).to_have_count(1)
            elif verb == "download":
                async with page.expect_download() as info:
                    await _target(page, args["click"]).click()
                downloads.append(await info.value)
            else:
                pytest.fail(f"shop.yaml uses a step this test does not know: {verb}")

    assert await page.locator("#summary").inner_text() == '4 results for "lamp"'
    assert page.url == values["url"] + "search.html"

    (download,) = downloads
    assert download.suggested_filename == "results.csv"
    saved = await download.path()
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert [r["name"] for r in rows] == EXPECTED_NAMES

    extract = next(b for b in workflow["blocks"] if b["type"] == "extract")
    data: dict[str, Any] = {}
    for key, spec in extract["fields"].items():
        locator = page.locator(spec["selector"])
        texts = (
            await locator.all_inner_texts()
            if spec.get("all")
            else [await locator.first.inner_text()]
        )
        values_out: list[Any] = [_number(t) if spec.get("as") == "number" else t for t in texts]
        data[key] = values_out if spec.get("all") else values_out[0]
    jsonschema.validate(data, workflow["extraction_schema"])
    assert data == {"cheapest": "Glow Reading Lamp", "prices": EXPECTED_PRICES}
    assert data["prices"] == sorted(data["prices"])


async def test_search_with_enter_and_other_sorts(page: Page, site: SiteServer) -> None:
    await page.goto(site.url + "shop/search.html")
    await page.fill("#q", "bulb")
    await page.select_option("#sort", "name")
    await page.press("#q", "Enter")
    await expect(page.locator("#summary")).to_have_text('3 results for "bulb"')
    names = await page.locator(".result .name").all_inner_texts()
    assert names == ["Dusk Smart Bulb", "Ember Filament Bulb", "Halo LED Bulb 4-Pack"]
    await expect(page.locator("#export")).to_have_attribute("href", re.compile(r"q=bulb&sort=name"))

    await page.fill("#q", "chandelier")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#summary")).to_have_text('0 results for "chandelier"')
    await expect(page.locator(".result")).to_have_count(0)


async def test_add_to_cart_and_view_cart(page: Page, site: SiteServer) -> None:
    await page.goto(site.url + "shop/search.html?q=lamp&sort=price&in_stock=1")
    first = page.locator(".result").first
    await first.get_by_role("button", name="Add to cart").click()
    await first.get_by_role("button", name="Add to cart").click()
    await page.locator(".result").nth(1).get_by_role("button", name="Add to cart").click()
    await expect(page.locator("[data-cart-count]").first).to_have_text("3")
    await page.get_by_role("link", name="View cart").click()
    await expect(page).to_have_url(site.url + "shop/cart.html")
    await expect(page.locator(".cart-item .name")).to_have_text(
        ["Glow Reading Lamp", "Nimbus Desk Lamp"]
    )
    await expect(page.locator("#total")).to_have_text("$84.48")  # 2 × 24.99 + 34.50
    await page.get_by_role("button", name="Empty cart").click()
    await expect(page.get_by_text("Your cart is empty")).to_be_visible()


async def test_login_page_logs_and_throws(page: Page, site: SiteServer) -> None:
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    await page.goto(site.url + "login.html")
    assert "login page ready" in console
    async with page.expect_event("pageerror") as error_info:
        await page.get_by_role("button", name="Trigger page error").click()
    assert "Deliberate page error" in str(await error_info.value)

    await page.fill("#username", "alice")
    await page.fill("#password", "hunter2-secret")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("h1")).to_have_text("Welcome, alice")


async def test_upload_in_chromium(page: Page, site: SiteServer) -> None:
    await page.goto(site.url + "upload.html")
    room: FilePayload = {"name": "room.txt", "mimeType": "text/plain", "buffer": b"cosy!"}
    await page.set_input_files("#file", files=[room])
    await page.get_by_role("button", name="Upload").click()
    await expect(page.locator("h1")).to_have_text("Received room.txt (5 bytes)")


async def test_popup_opens_the_shop_in_a_new_tab(page: Page, site: SiteServer) -> None:
    await page.goto(site.url + "popup.html")
    async with page.context.expect_page() as new_page_info:
        await page.locator("#open-shop").click()
    new_page = await new_page_info.value
    await new_page.wait_for_load_state()
    assert new_page.url == site.url + "shop/index.html"
    await expect(new_page.locator("h1")).to_have_text("Light that feels like home")


async def test_scroll_page_has_a_far_away_bottom(page: Page, site: SiteServer) -> None:
    await page.goto(site.url + "scroll.html")
    bottom = page.locator("#bottom")
    await expect(bottom).to_have_text("You reached the bottom")
    await expect(bottom).not_to_be_in_viewport()
    await bottom.scroll_into_view_if_needed()
    await expect(bottom).to_be_in_viewport()


async def test_slow_page_loads_at_once(page: Page, site: SiteServer) -> None:
    started = time.monotonic()
    await page.goto(site.url + "slow.html")
    assert time.monotonic() - started < 5
    await page.get_by_role("button", name="Fetch /slow?ms=500").click()
    await expect(page.locator("#fetch-result")).to_contain_text("Slow answer arrived")
