"""The review page's screenshots (docs/figures/review_overview.png, review_card.png), made in real headless Chromium.

The lake is never written: the page runs on a light copy of it (``catalog.sqlite``,
``tables/`` and ``runs/`` copied; ``sessions/`` and ``clips/`` linked), in which the
script labels the first ``--labels`` cells of the queue from the keyboard as reviewer
``--reviewer`` (good, except every fifth cell bad for the model's reason or
``no_transients``), optionally clicks *Retrain* (``--retrain``: the header then shows
"retraining..."), and captures the Overview tab and the cell card that follows the
labelled ones (its clip frame: ``--clip-frame``). The window is 1400 x 1000 as in
``tests/cli/test_review_browser.py``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/deps/chromium.sh``) and Selenium
(the ``dev`` extra). Usage::

    .venv/bin/python benchmarks/review_screenshots.py --lake demo/lake --out docs/figures

Writes ``<out>/review_overview.png`` and ``<out>/review_card.png``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["light_copy", "main", "screenshots"]

#: Keys pressed on the queue's first cells, repeated: four good, one bad.
PATTERN = "ggggb"


def light_copy(lake: Path, dest: Path) -> Path:
    """A copy of ``lake`` that the page may write: small parts copied, the stores linked."""
    dest.mkdir(parents=True)
    shutil.copy2(lake / "catalog.sqlite", dest / "catalog.sqlite")
    for name in ("tables", "runs"):
        if (lake / name).is_dir():
            shutil.copytree(lake / name, dest / name, symlinks=True)
    for name in ("sessions", "clips"):
        if (lake / name).is_dir():
            (dest / name).symlink_to((lake / name).resolve(), target_is_directory=True)
    if (lake / "models").is_dir():  # a retrain registers its model here
        shutil.copytree(lake / "models", dest / "models", symlinks=True)
    (dest / "tmp").mkdir(exist_ok=True)
    return dest


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("error: needs chromium and chromium-driver (.ci/deps/chromium.sh)")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1400,1000")
    opts.binary_location = chromium
    return webdriver.Chrome(service=Service(driver), options=opts)


def _wait(browser: Any, script: str, timeout: float = 120.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def screenshots(
    lake: Path, out: Path, *, reviewer: str, labels: int, retrain: bool, clip_frame: int
) -> list[Path]:
    """Serve ``lake`` (a writable copy), label, capture; return the PNG files written."""
    from selenium.webdriver.common.by import By

    from cellsift.cli.web import serve
    from cellsift.pipeline.review import ReviewConfig, ReviewService

    service = ReviewService(ReviewConfig(lake=lake, reviewer=reviewer))
    ready: list[str] = []
    threading.Thread(target=serve, args=(service,), kwargs={"on_ready": ready.append}, daemon=True).start()
    while not ready:
        time.sleep(0.05)
    browser = _browser()
    try:
        browser.get(ready[0])
        _wait(browser, "return document.body.dataset.ready === '1' && document.body.dataset.shown")
        cids = browser.execute_async_script(
            "const done = arguments[0]; fetch('api/queue').then(r => r.json()).then(q => done(q.cid));"
        )
        body = browser.find_element(By.TAG_NAME, "body")
        for k in range(min(labels, len(cids) - 1)):
            body.send_keys(PATTERN[k % len(PATTERN)])
            _wait(browser, f"return document.body.dataset.shown === {cids[k + 1]!r}")
        if retrain:
            browser.find_element(By.ID, "retrain-btn").click()
            _wait(browser, "return document.getElementById('retrain-state').dataset.state !== 'idle'")
        body.send_keys("o")
        _wait(browser, "return document.querySelectorAll('#ov-sessions tr').length > 1")
        time.sleep(0.5)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "review_overview.png", out / "review_card.png"]
        browser.save_screenshot(str(written[0]))
        body.send_keys("o")
        _wait(browser, "return !document.getElementById('card-view').hidden")
        browser.execute_script(
            f"S.playing = false; S.clipFrame = {int(clip_frame)};"
        )  # the clip paused there
        time.sleep(0.5)
        browser.save_screenshot(str(written[1]))
        return written
    finally:
        browser.quit()


def main(argv: list[str] | None = None) -> int:
    text = (__doc__ or "").strip()
    first, _, rest = text.partition("\n")
    parser = argparse.ArgumentParser(
        description=first, epilog=rest.strip(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lake", type=Path, required=True, help="a processed lake (never written)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="folder of the PNG files")
    parser.add_argument("--reviewer", default="ana", help="reviewer name shown on the page")
    parser.add_argument("--labels", type=int, default=25, help="cells labelled before the captures")
    parser.add_argument("--retrain", action="store_true", help="click Retrain before the captures")
    parser.add_argument("--clip-frame", type=int, default=15, help="frame of the peak clip shown")
    args = parser.parse_args(argv)
    if not (args.lake / "catalog.sqlite").is_file():
        print(f"error: no lake at {args.lake} (no catalog.sqlite): pass --lake", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="cellsift-shots-"))
    try:
        lake = light_copy(args.lake.resolve(), scratch / "lake")
        for path in screenshots(
            lake,
            args.out,
            reviewer=args.reviewer,
            labels=args.labels,
            retrain=args.retrain,
            clip_frame=args.clip_frame,
        ):
            print(f"wrote {path}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
