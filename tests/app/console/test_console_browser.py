"""The reviewer console in real headless Chromium (Debian's package, driven by selenium and
chromium-driver): sign in, filter, approve / edit / reject pairs, see a trainer with
--require-approval lease only the approved ones, see gate figures and roll back.

Screenshots go to ``$CONSCIENCE_SCREENSHOTS`` when set (docs/OPERATIONS.md uses them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from selenium import webdriver

from app.adapter_registry import AdapterRegistry
from app.queue import open_queue
from app.records import Message, PairRecord
from tests.app.adapter_helpers import publish_adapter

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
KEY = "c0nsole-key"
SHOTS = os.environ.get("CONSCIENCE_SCREENSHOTS")

if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):  # CI installs them; no silent skip
    raise RuntimeError(
        "the console test needs chromium + chromium-driver: scripts/ensure-chromium.sh"
    )


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def pairs() -> list[PairRecord]:
    topics = ["lock picking", "bread baking", "phishing e-mails", "tax forms"]
    return [
        PairRecord(
            prompt=[Message(role="user", content=f"Tell me about {topic}.")],
            chosen=[Message(role="assistant", content=f"A careful, helpful answer on {topic}.")],
            rejected=[Message(role="assistant", content=f"A reckless draft on {topic}.")],
            framework="introspective" if i % 2 else "three_laws",
            framework_version="1",
            review_prompt_hash="0" * 64,
            verdict="unethical",
            score=0.5 + i / 10,
        )
        for i, topic in enumerate(topics)
    ]


def shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


def row(driver, record: PairRecord):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, f"pair-{record.id}")


def submit(driver, element) -> None:
    """Click a form button and wait until the next page replaced this one (a navigation
    drops the window's properties, so the mark set here is gone once it loaded)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.__before_submit = true")
    element.click()
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "return window.__before_submit === undefined && document.readyState === 'complete'"
        )
    )


def click(driver, record: PairRecord, action: str) -> None:
    from selenium.webdriver.common.by import By

    submit(driver, row(driver, record).find_element(By.CSS_SELECTOR, f"button[value='{action}']"))


def test_console_review_flow_and_rollback(serve, tiny_model_dir, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from trainer.config import load_config
    from trainer.loop import PairSource

    queue_url = f"sqlite:///{tmp_path / 'pairs.db'}"
    records = pairs()
    with open_queue(queue_url) as queue:
        queue.produce(records)
    root = tmp_path / "adapters"
    served = serve(
        model=str(tiny_model_dir),
        queue=queue_url,
        adapters_dir=root,
        adapter_poll_s=0.2,
        admin_key=KEY,
        gate=True,
        gate_max_tokens=8,
        gate_set_size=4,
        gate_max_flag_rise=1.0,
        gate_max_refusal_rise=1.0,
        gate_length_ratio_min=0.01,
        gate_length_ratio_max=100.0,
        gate_max_margin_drop=100.0,
    )
    base = served.base_url
    # The page is behind the admin key: no key, no pairs; a wrong key is refused.
    assert "question" not in httpx.get(f"{base}/console").text
    assert (
        httpx.post(f"{base}/console/pairs/{records[0].id}", data={"action": "approve"}).status_code
        == 401
    )
    browser.get(f"{base}/console")
    shot(browser, "console-sign-in.png")
    browser.find_element(By.ID, "key").send_keys("wrong")
    submit(browser, browser.find_element(By.ID, "sign-in"))
    assert "Wrong admin key" in browser.find_element(By.ID, "login-error").text
    browser.find_element(By.ID, "key").send_keys(KEY)
    submit(browser, browser.find_element(By.ID, "sign-in"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#pairs tr[id^='pair-']")) == 4

    # Filter and search.
    browser.find_element(By.ID, "q").send_keys("bread")
    submit(browser, browser.find_element(By.ID, "apply"))
    shown = browser.find_elements(By.CSS_SELECTOR, "#pairs tr[id^='pair-']")
    assert [r.get_attribute("id") for r in shown] == [f"pair-{records[1].id}"]
    browser.find_element(By.ID, "q").clear()
    Select(browser.find_element(By.ID, "framework")).select_by_value("three_laws")
    submit(browser, browser.find_element(By.ID, "apply"))
    shown = {
        r.get_attribute("id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#pairs tr[id^='pair-']")
    }
    assert shown == {f"pair-{records[0].id}", f"pair-{records[2].id}"}
    Select(browser.find_element(By.ID, "framework")).select_by_value("")
    submit(browser, browser.find_element(By.ID, "apply"))
    shot(browser, "console-pairs.png")

    # Approve one, edit and approve another, reject a third; the fourth stays pending.
    click(browser, records[1], "approve")
    editor = row(browser, records[3]).find_element(By.NAME, "chosen")
    editor.clear()
    editor.send_keys("Fill in the form line by line; ask a tax adviser when unsure.")
    click(browser, records[3], "approve")
    click(browser, records[2], "reject")
    assert {
        r.get_attribute("id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#pairs tr[id^='pair-']")
    } == {f"pair-{records[0].id}"}
    Select(browser.find_element(By.ID, "status")).select_by_visible_text("all")
    submit(browser, browser.find_element(By.ID, "apply"))
    states = {
        r.get_attribute("id"): r.find_element(By.CLASS_NAME, "state").text
        for r in browser.find_elements(By.CSS_SELECTOR, "#pairs tr[id^='pair-']")
    }
    assert states == {
        f"pair-{records[0].id}": "pending",
        f"pair-{records[1].id}": "approved",
        f"pair-{records[2].id}": "rejected",
        f"pair-{records[3].id}": "approved",
    }
    shot(browser, "console-reviewed.png")

    # A trainer with --require-approval leases exactly the approved pairs, edit included.
    config = load_config(
        queue=queue_url, adapters=root, require_approval=True, min_pairs=1, round_size=8
    )
    with open_queue(queue_url) as queue:
        leased = PairSource(queue, AdapterRegistry(root), config).next_round()
    assert sorted(r.id for r in leased) == sorted([records[1].id, records[3].id])
    edited = next(r for r in leased if r.id == records[3].id)
    assert edited.chosen[-1].content.startswith("Fill in the form line by line")

    # Adapter versions with gate figures, and the rollback button.
    v1 = publish_adapter(root, tiny_model_dir, seed=1)
    _wait(base, lambda s: s["current"] == v1)
    v2 = publish_adapter(root, tiny_model_dir, seed=2)
    _wait(base, lambda s: s["current"] == v2)
    browser.get(f"{base}/console")
    assert browser.find_element(By.ID, "current").text == v2
    figures = browser.find_element(By.ID, f"version-{v2}").text
    assert "promoted" in figures and f"against {v1}" in figures and "benign refusals" in figures
    shot(browser, "console-adapters.png")
    submit(browser, browser.find_element(By.ID, "rollback"))
    assert browser.find_element(By.ID, "current").text == v1
    status = httpx.get(f"{base}/admin/adapters", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert status["current"] == v1 and status["following"] is False
    submit(browser, browser.find_element(By.ID, "sign-out"))
    assert browser.find_elements(By.ID, "sign-in")


def _wait(base: str, predicate, limit_s: float = 300) -> dict:
    import time

    deadline = time.monotonic() + limit_s
    headers = {"Authorization": f"Bearer {KEY}"}
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/admin/adapters", headers=headers, timeout=30).json()
        if predicate(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"adapter status never matched: {status}")
