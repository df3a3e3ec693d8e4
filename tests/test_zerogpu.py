"""ZeroGPU-correct: with a stand-in for the `spaces` package (tests/stand_in), the shared app runs every model
call inside a GPU function, the live session's decoding thread included, asking for a duration sized from the
audio. (This file runs after the API and browser tests, which used the same app: their calls are checked too.)"""

import json
import re

import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import expect

from tests.test_browser import (CHROMIUM, LIVE_TIMEOUT_MS, fake_microphone_browser, only_teacher, open_page,
                                open_tab)
from ui.gpu import seconds_for

pytestmark = pytest.mark.browser


def entries(artifacts) -> list[dict]:
    path = artifacts / "zerogpu.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_every_model_call_runs_inside_a_gpu_function(served_app, artifacts, tmp_path):
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    goforward = Path(__file__).resolve().parents[1] / "assets" / "audio" / "goforward.wav"
    Client(served_app.url, verbose=False).predict(handle_file(goforward), api_name="/transcribe_file")
    with sync_playwright() as playwright:
        browser = fake_microphone_browser(playwright, tmp_path)
        try:
            page = open_page(browser, served_app.url)
            open_tab(page, "Live")
            only_teacher(page)
            page.locator("#live-compare input").uncheck()
            microphone = page.locator("#live-audio")
            microphone.get_by_role("button", name="Record", exact=True).click()
            expect(page.locator("#live-committed")).to_contain_text(re.compile(r"fellow|americans", re.I),
                                                                    timeout=LIVE_TIMEOUT_MS)
            microphone.get_by_role("button", name="Stop", exact=True).click()
            expect(page.locator("#live-text")).to_contain_text("stopped", timeout=LIVE_TIMEOUT_MS)
        finally:
            browser.close()

    log = entries(artifacts)
    violations = [e for e in log if "violation" in e]
    assert not violations, violations[:5]
    calls = [e for e in log if "gpu" in e]
    files = [e for e in calls if e["gpu"] == "transcribe_file"]
    assert files and files[-1]["duration"] == seconds_for(2.786, 3)  # sized from the file's header
    live = [e for e in calls if e["gpu"] == "_live_update"]
    assert live and all(e["thread"] != "MainThread" for e in live)  # the session's own thread, under GPU
    assert any(e["gpu"] == "live_stop" for e in calls)
