"""The console in a real browser: headless Chromium (Debian's chromium and chromedriver,
installed by deploy/bootstrap.sh --test) driven by Selenium against the worker fed the
scenario (tests/integration/desk.py). Screenshots of each page go to the test's tmp dir; with
DIALWATCH_CONSOLE_SCREENSHOT=docs/console.png the number page's is also copied there (how the
README's screenshot is made)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis.asyncio as aioredis
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from config.numbering import plan_from_setting
from config.settings import Settings
from streams.campaignwork import CampaignRecorder, CampaignTicker
from streams.cdr import CDR
from streams.cli import main
from streams.files import read_located
from streams.observe import derived_obs
from streams.state.base import PartitionMeta
from tests.integration.desk import ApiWorker

pytestmark = pytest.mark.e2e
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1100", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(10)  # a click's navigation may still be under way
    try:
        yield driver
    finally:
        driver.quit()


def absent(driver: WebDriver, selector: str) -> bool:
    """No element matches ``selector`` now (without the implicit wait)."""
    driver.implicitly_wait(0)
    try:
        return not driver.find_elements(By.CSS_SELECTOR, selector)
    finally:
        driver.implicitly_wait(10)


def notice(driver: WebDriver, word: str) -> None:
    """Wait for the page a form led to: its notice says ``word``."""

    def said(d: WebDriver) -> bool:
        return word in d.find_element(By.ID, "notice").text

    WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException]).until(said)


def sign_in(driver: WebDriver, w: ApiWorker, role: str, shots: Path) -> None:
    driver.get(f"{w.url}/console")
    assert driver.current_url.endswith("/console/login")  # no session: to the login page
    driver.find_element(By.ID, "token").send_keys(w.tokens[role])
    driver.save_screenshot(str(shots / f"login-{role}.png"))
    driver.find_element(By.ID, "login").click()
    assert driver.find_element(By.ID, "who").text == f"{w.names[role]} ({role})"
    assert w.tokens[role] not in driver.current_url
    cookie = driver.get_cookie("dw_console")
    assert cookie is not None and cookie["httpOnly"] and w.tokens[role] not in cookie["value"]


def pending(w: ApiWorker) -> list[str]:
    _, body = w.call("GET", "/interceptions?state=pending", "read-only")
    return sorted(str(x["number"]) for x in body["entries"])


def test_an_operator_approves_and_releases_a_read_only_token_changes_nothing(
    api_worker: ApiWorker, browser: WebDriver, tmp_path: Path
) -> None:
    w, driver, client = api_worker, browser, api_worker.redis()
    waiting = pending(w)
    assert len(waiting) >= 2, "the scenario left too little pending"
    number, other = waiting[0], waiting[1]

    # A wrong token is refused on the page, nothing set.
    driver.get(f"{w.url}/console/login")
    driver.find_element(By.ID, "token").send_keys("not-a-token-anybody-has")
    driver.find_element(By.ID, "login").click()
    assert "not configured" in driver.find_element(By.ID, "login-error").text
    assert driver.get_cookie("dw_console") is None

    sign_in(driver, w, "operator", tmp_path)
    assert driver.find_element(By.ID, "breaker-state").text in ("open", "closed")
    assert driver.find_elements(By.CSS_SELECTOR, "#alerts-table tbody tr")  # recent alerts
    assert "calls in" in driver.find_element(By.ID, "alerts-table").text  # with their reasons
    driver.save_screenshot(str(tmp_path / "overview.png"))

    # Approve from the queue: active in the list and in Redis.
    driver.find_element(By.CSS_SELECTOR, f'button.approve[data-number="{number}"]').click()
    notice(driver, "approved")
    assert number in driver.find_element(By.ID, "active-table").text
    assert number not in driver.find_element(By.ID, "pending").text
    assert client.hget(w.key("icpt", number), "state") == "active"
    assert client.hget(w.key("icpt", number), "approved_by") == w.names["operator"]

    # Reject another with a reason.
    row = driver.find_element(By.CSS_SELECTOR, f'button.reject[data-number="{other}"]')
    row.find_element(By.XPATH, "preceding-sibling::input[@name='reason']").send_keys("no dialler")
    row.click()
    notice(driver, "rejected")
    assert not client.exists(w.key("pend", other))

    # The number's page: chart with thresholds and the alert moment, alerts, audit, release.
    driver.find_element(By.LINK_TEXT, number).click()
    assert driver.find_element(By.ID, "state-active")
    chart = driver.find_element(By.CSS_SELECTOR, "svg.chart")
    assert chart.find_elements(By.CSS_SELECTOR, "line.threshold")
    assert chart.find_elements(By.CSS_SELECTOR, "line.alert-moment")
    assert driver.find_elements(By.CSS_SELECTOR, "#number-alerts tbody tr")
    driver.save_screenshot(str(tmp_path / "number.png"))
    if os.environ.get("DIALWATCH_CONSOLE_SCREENSHOT"):  # to refresh docs/console.png
        shutil.copy(tmp_path / "number.png", os.environ["DIALWATCH_CONSOLE_SCREENSHOT"])
    driver.find_element(By.ID, "release").click()  # the reason is required: nothing sent
    assert client.exists(w.key("icpt", number))
    driver.find_element(By.ID, "release-reason").send_keys("wrongly flagged: courier")
    driver.find_element(By.ID, "release").click()
    notice(driver, "released")
    assert not client.exists(w.key("icpt", number))
    audit = driver.find_element(By.ID, "audit-table").text
    assert "release" in audit and "wrongly flagged: courier" in audit and "olga" in audit
    driver.save_screenshot(str(tmp_path / "number-released.png"))
    driver.find_element(By.ID, "logout").click()
    assert driver.find_element(By.ID, "token")  # back on the login page
    assert driver.current_url.endswith("/console/login")

    # A read-only token sees no button, and a forged form is refused.
    sign_in(driver, w, "read-only", tmp_path)
    assert absent(driver, "button.approve, button.reject")
    driver.save_screenshot(str(tmp_path / "overview-read-only.png"))
    left = pending(w)
    assert left
    target = left[0]
    driver.get(f"{w.url}/console/numbers/{target}")
    assert driver.find_element(By.ID, "number-state")  # the page is there
    assert absent(driver, "#release, #approve")
    driver.execute_script(
        """const f = document.createElement('form'); f.method = 'post';
        f.action = '/console/interceptions/' + arguments[0] + '/approve';
        const c = document.createElement('input'); c.name = 'csrf';
        c.value = document.querySelector('meta[name=csrf]').content; f.appendChild(c);
        document.body.appendChild(f); f.submit();""",
        target,
    )
    assert "read-only" in driver.find_element(By.ID, "refused").text
    assert client.exists(w.key("pend", target)) and not client.exists(w.key("icpt", target))
    driver.save_screenshot(str(tmp_path / "refused-read-only.png"))
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(shots) == 7, shots
    print(f"screenshots in {tmp_path}: {shots}")


def evaluated_campaigns(w: ApiWorker, tmp_path: Path) -> list[dict[str, Any]]:
    """The leak scenario recorded and evaluated (streams.campaignwork) under a prefix of its
    own, then its campaign records and timelines copied to the worker's: what its console
    shows, made by the real evaluation (the worker's own traffic has no leak behind it)."""
    path = tmp_path / "leaks.jsonl"
    argv = ["simulate", "--leaks", "--days", "7", "--subscribers", "1500", "--seed", "4"]
    assert main([*argv, "--start", "2026-11-01T00:00:00+08:00", "--out", str(path)]) == 0
    settings = Settings.from_env(redis=w.redis_url, topic_partitions=1, key_prefix=f"{w.prefix}-lk")
    plan = plan_from_setting(settings.numbering_plan)
    tz = ZoneInfo(settings.timezone)
    cdrs = [rec for _, rec in read_located(str(path), plan, tz) if isinstance(rec, CDR)]

    async def run() -> None:
        client = aioredis.Redis.from_url(w.redis_url)
        try:
            recorder = CampaignRecorder(client, settings, plan)
            await recorder.record(derived_obs(cdrs, (), 0, plan))

            async def meta(partition: int) -> PartitionMeta:
                return PartitionMeta(0, 0, ((0, 2**62),))

            async def send(topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                future.set_result(None)
                return future

            async def nothing(alerts: list[dict[str, Any]]) -> None:
                return None

            async def unlisted(number: str) -> bool:
                return False

            ticker = CampaignTicker(
                recorder, settings, plan, tz, meta, 1, send, nothing, unlisted, "test"
            )
            while await ticker.run():
                pass
        finally:
            await client.aclose()

    asyncio.run(run())
    client = w.redis()
    source, target = f"{settings.key_prefix}:cs", f"{w.prefix}:cs"
    records = client.hgetall(f"{source}:records")
    assert records
    for cid, value in records.items():
        name = cid.decode() if isinstance(cid, bytes) else str(cid)
        client.hset(f"{target}:records", name, value)
        for point in client.lrange(f"{source}:hist:{name}", 0, -1):
            client.rpush(f"{target}:hist:{name}", point)
    return [orjson.loads(v) for v in records.values()]


def test_the_campaign_pages_show_members_victims_timeline_and_evidence(
    api_worker: ApiWorker, browser: WebDriver, tmp_path: Path
) -> None:
    w, driver = api_worker, browser
    records = evaluated_campaigns(w, tmp_path)
    leak = max((r for r in records if r["candidates"]), key=lambda r: r["victims"])
    sign_in(driver, w, "read-only", tmp_path)
    driver.find_element(By.LINK_TEXT, "Campaigns").click()
    listed = driver.find_element(By.ID, "campaigns").text
    for record in records:
        assert record["campaign_id"] in listed
    driver.save_screenshot(str(tmp_path / "campaigns.png"))
    driver.find_element(By.LINK_TEXT, leak["campaign_id"]).click()
    assert driver.find_element(By.ID, "size").text == str(leak["size"])
    assert driver.find_element(By.ID, "victims").text == str(leak["victims"])
    members = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#members li")]
    assert members == leak["members"]
    assert driver.find_elements(By.CSS_SELECTOR, "#timeline circle.point")
    assert driver.find_elements(By.CSS_SELECTOR, "#timeline-table tbody tr")
    rows = driver.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")
    assert len(rows) == len(leak["candidates"])
    best = leak["candidates"][0]
    assert best["number"] in rows[0].text
    assert f"{best['victims_contacted']} of {leak['victims']}" in rows[0].text
    driver.save_screenshot(str(tmp_path / "campaign.png"))
    # The API gives the same, to read-only tokens; a bad or unknown id is a clean error.
    status, body = w.call("GET", f"/campaigns/{leak['campaign_id']}", "read-only")
    assert status == 200 and body["campaign"] == leak and body["timeline"]
    status, body = w.call("GET", "/campaigns", "read-only")
    assert status == 200
    assert {c["campaign_id"] for c in body["campaigns"]} >= {r["campaign_id"] for r in records}
    assert w.call("GET", "/campaigns/cmp-000000000000", "read-only")[0] == 404
    assert w.call("GET", "/campaigns/nonsense", "read-only")[0] == 400
    driver.get(f"{w.url}/console/campaigns/cmp-000000000000")
    assert "no campaign" in driver.find_element(By.CSS_SELECTOR, "p.error").text
