"""``cellsift review suggest`` and the review server's safety rules (token, Host, POST header, names)."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from cellsift.cli.web import build_app, is_loopback
from cellsift.pipeline.review import ReviewConfig, ReviewService
from tests.commands import BIN
from tests.pipeline.review.lake import copy_lake, processed_tiny_lake


@pytest.fixture
def lake(_tiny_lake_master, tmp_path_factory, tmp_path):
    return copy_lake(
        processed_tiny_lake(_tiny_lake_master, tmp_path_factory.mktemp("review_master")), tmp_path / "lake"
    )


def test_suggest_writes_the_queue_csv(lake, tmp_path):
    out = tmp_path / "queue.csv"
    done = subprocess.run(
        [str(BIN / "cellsift"), "review", "suggest", "--lake", str(lake), "--n", "7", "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    queue = pd.read_csv(out)
    assert list(queue.columns) == ["cohort", "animal", "session", "unit_id", "p_good", "why"]
    assert len(queue) == 7 and queue["animal"].nunique() == 2
    bad = subprocess.run([str(BIN / "cellsift"), "review"], capture_output=True, text=True)
    assert bad.returncode == 1 and "error: field '--lake': no lake given" in bad.stderr


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_server_safety(lake):
    from starlette.testclient import TestClient

    service = ReviewService(ReviewConfig(lake=lake, reviewer="ana"))
    cid = service.queue()["cid"][0]
    open_app = TestClient(build_app(service, loopback=True), base_url="http://127.0.0.1:8000")
    assert open_app.get("/").status_code == 200
    assert open_app.get("/static/app.js").status_code == 200
    assert open_app.get("/static/..%2F__init__.py").status_code == 404
    assert open_app.get("/api/card", params={"cid": cid}).json()["cid"] == cid
    assert open_app.get("/api/card", params={"cid": "../../../etc/passwd"}).status_code == 400
    # the cells named as coming next are looked up, never opened
    ahead = [("ahead", "../../../etc/passwd"), ("ahead", service.queue()["cid"][1])]
    assert open_app.get("/api/card", params=[("cid", cid), *ahead]).json()["cid"] == cid
    rebinding = TestClient(build_app(service, loopback=True), base_url="http://evil.example:8000")
    assert rebinding.get("/api/queue").status_code == 403
    body = {"cid": cid, "label": "good"}
    assert (
        open_app.post("/api/label", json=body).status_code == 403
    )  # no X-Cellsift header: maybe a forged form
    assert open_app.post("/api/label", json=body, headers={"X-Cellsift": "1"}).json()["mine"] == "good"

    guarded = TestClient(build_app(service, token="s3cret", loopback=False), base_url="http://10.0.0.5:8000")
    assert guarded.get("/api/queue").status_code == 403
    assert guarded.get("/", params={"token": "wrong"}).status_code == 403
    first = guarded.get("/", params={"token": "s3cret"})
    assert first.status_code == 200 and "cellsift_token" in first.cookies
    assert guarded.get("/api/overview").json()["n_mine"] == 1  # the cookie carries the token now
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
