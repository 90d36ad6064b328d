"""The review page in real headless Chromium: label 10 cells from the keyboard with one undo,
reload, find them labelled, check the lake's labels table, retrain, see the model registered.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/deps/chromium.sh``) and Selenium;
nothing is downloaded at test time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

import cellsift
from tests.commands import BIN
from tests.pipeline.review.lake import copy_lake, processed_tiny_lake

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _need_browser() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "selenium (pip install -e '.[dev]')"
    else:
        missing = "" if CHROMIUM and DRIVER else "chromium and chromium-driver (.ci/deps/chromium.sh)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test but lacks {missing}")
        pytest.skip(f"no {missing} on this machine")


@pytest.fixture
def browser():
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def served(_tiny_lake_master, tmp_path_factory, tmp_path):
    lake = copy_lake(
        processed_tiny_lake(_tiny_lake_master, tmp_path_factory.mktemp("review_master")), tmp_path / "lake"
    )
    proc = subprocess.Popen(
        [str(BIN / "cellsift"), "review", "--lake", str(lake), "--reviewer", "tester", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url, seen = None, []
    deadline = time.monotonic() + 180
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        seen.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        url = found.group(1) if found else None
    if url is None:
        proc.kill()
        pytest.fail("the review server printed no URL:\n" + "".join(seen))
    yield lake, url
    proc.terminate()
    proc.wait(timeout=30)


def _wait(driver, script, timeout=60.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def _shown(driver):
    return driver.execute_script("return document.body.dataset.shown || ''")


def test_label_ten_cells_from_the_keyboard_reload_and_retrain(served, browser):
    from selenium.webdriver.common.by import By

    lake, url = served
    browser.get(url)
    _wait(browser, "return document.body.dataset.ready === '1' && document.body.dataset.shown")
    queue = browser.execute_async_script(
        "const done = arguments[0]; fetch('api/queue').then(r => r.json()).then(q => done(q.cid));"
    )
    assert _shown(browser) == queue[0]
    body = browser.find_element(By.TAG_NAME, "body")

    def press(key, expect_shown):
        body.send_keys(key)
        _wait(browser, f"return document.body.dataset.shown === {expect_shown!r}")

    keys = ["g", "b", "g", "1", "g"]
    for k, key in enumerate(keys):
        press(key, queue[k + 1])
    press("u", queue[4])  # undo the 5th label: back on that cell, unlabelled
    _wait(browser, "return document.getElementById('mine-label').dataset.label === ''")
    for k, key in enumerate(["g", "b", "2", "g", "g", "3"]):
        press(key, queue[k + 5])
    expected = {
        queue[0]: ("good", None),
        queue[1]: ("bad", "no_transients"),
        queue[2]: ("good", None),
        queue[3]: ("bad", "no_transients"),
        queue[4]: ("good", None),
        queue[5]: ("bad", "no_transients"),
        queue[6]: ("bad", "irregular_shape"),
        queue[7]: ("good", None),
        queue[8]: ("good", None),
        queue[9]: ("bad", "borrowed_fluorescence"),
    }

    browser.refresh()
    _wait(browser, "return document.body.dataset.ready === '1' && document.body.dataset.shown")
    assert _shown(browser) == queue[10]  # the page resumes at the first unlabelled cell
    marks = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#queue li')].map(li => [li.dataset.cid, li.dataset.mine]));"
    )
    assert {cid: marks.get(cid) for cid in expected} == {cid: lab for cid, (lab, _) in expected.items()}
    browser.find_element(By.CSS_SELECTOR, f"#queue li[data-cid='{queue[1]}']").click()
    _wait(browser, f"return document.body.dataset.shown === {queue[1]!r}")
    assert browser.find_element(By.ID, "mine-label").text == "you: bad (no_transients)"

    labels = cellsift.open_lake(lake).labels
    review = labels[labels["source"] == "review"]
    got = {
        f"{r.cohort}:{r.animal}:{r.session}:{r.unit_id}": (
            r.label,
            None if not isinstance(r.reason, str) else r.reason,
        )
        for r in review.itertuples()
    }
    assert len(review) == 10 and got == expected
    assert set(review["reviewer"]) == {"tester"}

    browser.find_element(By.ID, "retrain-btn").click()
    state = _wait(
        browser,
        "const s = document.getElementById('retrain-state').dataset.state;"
        "return (s === 'done' || s === 'failed') ? s : null;",
        timeout=300,
    )
    lines = browser.find_element(By.ID, "retrain-lines").text
    assert state == "done", lines
    model_id = re.search(r"registered (review-\S+)", browser.find_element(By.ID, "retrain-state").text).group(
        1
    )
    listed = subprocess.run(
        [str(BIN / "cellsift"), "models", "list", "--lake", str(lake)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert model_id in listed
    scored = cellsift.open_lake(lake).cells
    assert (scored["model_id"] == model_id).all()  # the lake was re-scored with it
