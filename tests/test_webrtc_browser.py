"""The browser call page (clients/web/) in a real headless Chromium with a fake camera, against a real server:
the call connects over WebRTC, the S²VC reconstruction plays in #coded, stats arrive on the data channel, the
rate/target/keyframe controls reach the coder, hang up ends the call on the server; a wrong API key shows the
server's error and never connects."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from .test_server_common import KEY, start_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Chromium and chromedriver on PATH (Debian packages chromium and chromium-driver)",
)

CONNECT_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("webrtc_browser"), api_keys=KEY, webrtc_hosts="127.0.0.1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield drv
    drv.quit()


def wait_for(check: Callable[[], Any], timeout: float, what: str, diagnose: Callable[[], str] = lambda: "") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` and ``diagnose()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{diagnose()}")
        time.sleep(0.2)


def page_state(driver) -> dict[str, Any]:
    return driver.execute_script(
        """const v = document.getElementById("coded"), c = window.s2vcCall || {};
        return {state: document.body.dataset.state, error: document.getElementById("error").textContent,
                id: c.id || null, framesReceived: c.framesReceived || 0, statsMessages: c.statsMessages || 0,
                stats: c.stats || null, frames: document.getElementById("stat-frames").textContent,
                width: v.videoWidth, height: v.videoHeight, time: v.currentTime};"""
    )


def diagnostics(driver, server) -> Callable[[], str]:
    def text() -> str:
        parts = []
        try:
            parts.append(f"page: {page_state(driver)}")
            parts.append("browser console:\n" + "\n".join(e["message"] for e in driver.get_log("browser")))
        except WebDriverException as exc:  # the log is not offered by every driver
            parts.append(f"(no page state or browser log: {exc.msg})")
        parts.append("server log tail:\n" + server.log_tail(60))
        return "\n".join(parts)

    return text


def frames_counter(driver) -> int:
    text = driver.find_element(By.ID, "stat-frames").text.strip()
    return int(text) if text.isdigit() else -1


def test_browser_call_shows_the_coded_video_and_hangs_up(server, driver, tmp_path):
    diagnose = diagnostics(driver, server)
    driver.get(f"{server.url}/?key={KEY}&autostart=1")

    wait_for(lambda: page_state(driver)["state"] == "connected", CONNECT_TIMEOUT_S, "data-state=connected", diagnose)
    call_id = page_state(driver)["id"]
    assert call_id, diagnose()

    first = wait_for(lambda: (s := page_state(driver))["width"] > 0 and s["time"] > 0 and s, 30,
                     "the #coded video to play", diagnose)
    assert page_state(driver)["state"] == "connected"
    wait_for(lambda: page_state(driver)["time"] > first["time"] + 0.2, 20, "#coded currentTime to advance", diagnose)

    frames_before = wait_for(lambda: max(frames_counter(driver), 0), 30, "stats messages (#stat-frames)", diagnose)
    wait_for(lambda: frames_counter(driver) > frames_before, 20, "#stat-frames to increase", diagnose)

    wait_for(lambda: page_state(driver)["framesReceived"] > 0, 10, "inbound-rtp framesReceived > 0", diagnose)
    state = page_state(driver)
    stats = state["stats"]
    assert stats["type"] == "stats", stats
    assert stats["width"] > 0 and stats["height"] > 0 and stats["rates"] >= 1, stats
    assert stats["width"] <= 320 and stats["height"] <= 240, stats  # the default max_width, max_height
    assert driver.find_element(By.ID, "stat-size").text == f"{stats['width']}×{stats['height']}"
    assert state["error"] == "", state["error"]

    # The controls reach the server: a fixed rate point, a bitrate target (on, then off), a keyframe request.
    if stats["rates"] >= 2:
        driver.execute_script(
            """const r = document.getElementById("rate"); r.value = "1";
            r.dispatchEvent(new Event("input", {bubbles: true}));"""
        )
        wait_for(lambda: page_state(driver)["stats"]["rate"] == 1, 10, "stats with rate 1 (slider)", diagnose)
    driver.find_element(By.ID, "target").send_keys("150")
    driver.find_element(By.ID, "set-target").click()
    wait_for(lambda: page_state(driver)["stats"]["target_kbps"] == 150, 10, "stats with target_kbps 150", diagnose)
    driver.find_element(By.ID, "target").clear()
    driver.find_element(By.ID, "set-target").click()
    wait_for(lambda: page_state(driver)["stats"]["target_kbps"] is None, 10, "stats with target_kbps null", diagnose)
    keyframes = driver.execute_script("return window.s2vcCall.units.I")
    driver.find_element(By.ID, "keyframe").click()
    wait_for(lambda: driver.execute_script("return window.s2vcCall.units.I") > keyframes, 10,
             "an I unit after the keyframe request", diagnose)

    shot = tmp_path / "webrtc_call.png"
    assert driver.save_screenshot(str(shot))
    print(f"screenshot of the call page: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000, shot.stat().st_size

    headers, call_url = {"Authorization": f"Bearer {KEY}"}, f"{server.url}/v1/webrtc/{call_id}"
    assert httpx.get(call_url, headers=headers, timeout=10).status_code == 200

    driver.find_element(By.ID, "hangup").click()
    wait_for(lambda: page_state(driver)["state"] == "closed", 10, "data-state=closed after hang up", diagnose)
    wait_for(lambda: httpx.get(call_url, headers=headers, timeout=10).status_code in (404, 410), 5,
             f"GET /v1/webrtc/{call_id} to answer 404 or 410 after hang up", diagnose)
    assert page_state(driver)["error"] == ""


def test_wrong_api_key_shows_the_servers_error(server, driver):
    diagnose = diagnostics(driver, server)
    driver.get(f"{server.url}/?key=not-the-key&autostart=1")

    error = wait_for(lambda: driver.find_element(By.ID, "error").text.strip(), 20, "an error in #error", diagnose)
    assert "invalid API key" in error, error
    assert "403" in error, error
    wait_for(lambda: page_state(driver)["state"] == "failed", 5, "data-state=failed", diagnose)
    time.sleep(1.0)
    assert page_state(driver)["state"] != "connected"
    assert page_state(driver)["id"] is None
