"""`nic serve` without a browser: the JSON API on real photos, bad uploads, limits, busy ports."""

from __future__ import annotations

import io
import re
import socket
import time

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from nic import codec
from nic.errors import NicError
from nic.eval import classic
from nic.eval.metrics import psnr, ssim_rgb
from nic.io import read_image
from nic.models import registry
from nic.quality import DEFAULT_QUALITY, QUALITY_MAX, QUALITY_MIN
from nic.serve.app import bind, create_app
from nic.serve.jobs import Jobs

from .conftest import DATA, run_nic

PHOTO = DATA / "kodim05-crop.png"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(workers=1, queue=1, max_pixels=512 * 512, max_upload=200_000)) as c:
        yield c


def _wait(client: TestClient, job: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job}").json()
        assert status["state"] in ("queued", "running", "done", "error")
        assert 0 <= status["done"] <= status["total"]
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.05)
    raise AssertionError("comparison did not finish in 120 s")


def _upload(client: TestClient, data: bytes, query: str, name: str = "photo.png"):
    return client.post(f"/api/compare?{query}", content=data, headers={"X-Filename": name})


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    info = client.get("/api/info").json()
    assert info["samples"] == ["kodim23.png"] and "hyperprior" in info["models"]
    assert (info["max_pixels"], info["max_upload_bytes"]) == (512 * 512, 200_000)
    assert info["models"] == sorted(registry.available()) and info["default_model"] == registry.DEFAULT_MODEL


def test_the_page_takes_the_quality_scale_from_the_server(client):
    info = client.get("/api/info").json()
    assert (info["quality_min"], info["quality_max"], info["default_quality"]) == \
        (QUALITY_MIN, QUALITY_MAX, DEFAULT_QUALITY)
    # the page's inputs hold no copy of the scale or the size limit: the script sets them from /api/info
    inputs = dict(re.findall(r'<input id="(quality|bpp)"([^>]*)>', client.get("/").text))
    assert not re.search(r"\b(min|max|value)=", inputs["quality"]) and not re.search(r"\bmax=", inputs["bpp"])
    script = client.get("/static/app.js").text
    assert all(f"info.{key}" in script for key in ("quality_min", "quality_max", "default_quality", "max_bpp"))
    # and the server holds to the limit it announces
    assert _upload(client, PHOTO.read_bytes(), f"bpp={info['max_bpp'] + 1}").status_code == 400
    too_high = _upload(client, PHOTO.read_bytes(), f"quality={info['quality_max'] + 1}")
    assert too_high.status_code == 400 and f"from {QUALITY_MIN} to {QUALITY_MAX}" in too_high.json()["error"]


def test_upload_compares_at_nics_file_size(client):
    answer = _upload(client, PHOTO.read_bytes(), "quality=60", "kodim05 crop.png")
    assert answer.status_code == 202
    status = _wait(client, answer.json()["job"])
    assert status["state"] == "done", status
    result = status["result"]
    assert (result["name"], result["width"], result["height"]) == ("kodim05 crop.png", 128, 96)
    source = read_image(PHOTO)
    expected = codec.encode(source, 60)  # what `nic compress -q 60` writes
    coded = {c["key"]: c for c in result["coded"]}
    assert list(coded) == ["nic", "jpeg", "webp", "avif"] and result["budget"] == len(expected)
    base = f"/api/jobs/{status['id']}"
    nic_file = client.get(f"{base}/nic.nic?download=1")
    assert nic_file.content == expected
    assert nic_file.headers["content-disposition"] == 'attachment; filename="kodim05_crop-nic.nic"'
    for key, c in coded.items():
        data = client.get(f"{base}/{key}.{c['ext']}").content
        decoded = codec.decode(data).rgb if key == "nic" else classic.decode(data)
        assert len(data) == c["bytes"] <= len(expected)
        assert c["bpp"] == pytest.approx(len(data) * 8 / (128 * 96))
        assert c["psnr"] == pytest.approx(psnr(source.rgb, decoded))
        assert c["ssim"] == pytest.approx(ssim_rgb(source.rgb, decoded))
        shown = np.asarray(Image.open(io.BytesIO(client.get(f"{base}/{key}.png").content)).convert("RGB"))
        assert np.array_equal(shown, decoded)
    original = Image.open(io.BytesIO(client.get(f"{base}/original.png").content))
    assert np.array_equal(np.asarray(original), source.rgb)
    assert client.get(f"{base}/nic.jpg").status_code == 404
    assert client.get(f"{base}/heic.png").status_code == 404


def test_target_size_and_alpha(client):
    img = Image.open(PHOTO).convert("RGBA")
    img.putalpha(128)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    status = _wait(client, _upload(client, buf.getvalue(), "bpp=2.0&model=conv-ae").json()["job"])
    result = status["result"]
    assert result["alpha_dropped"] is True
    nic = result["coded"][0]
    assert nic["label"] == "nic conv-ae" and nic["bytes"] * 8 / (128 * 96) <= 2.0


@pytest.mark.parametrize("data, query, status, message", [
    (b"hello, not a picture", "quality=75", 400, "notes.txt: not an image that Pillow can read"),
    (b"", "quality=75", 400, "no image: drop or pick a file, or take a sample"),
    (PHOTO.read_bytes()[:3000], "quality=75", 400, "notes.txt: cannot read image"),
    (PHOTO.read_bytes(), "quality=0", 400, "quality must be an integer from 1 to 100"),
    (PHOTO.read_bytes(), "quality=abc", 400, "not a number: 'abc'"),
    (PHOTO.read_bytes(), "quality=50&bpp=1", 400, "give either quality"),
    (PHOTO.read_bytes(), "bpp=-1", 400, "bpp must be above 0"),
    (PHOTO.read_bytes(), "quality=50&model=nope", 400, "unknown model 'nope'"),
    (PHOTO.read_bytes(), "quality=50&model=factorized", 400, "model 'factorized' was retired in favour of"),
    (b"", "quality=50&sample=../../weights/hyperprior.json", 400, "no sample called"),
    (bytes(300_000), "quality=75", 413, "the upload is over the limit of 0 MB"),
])
def test_bad_requests_get_a_clear_message(client, data, query, status, message):
    answer = _upload(client, data, query, "notes.txt")
    assert answer.status_code == status
    assert answer.json()["error"].startswith(message)


def test_a_decompression_bomb_is_refused_before_decoding(client):
    buf = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buf, format="PNG")  # 36 Mpx in about 35 kB
    assert len(buf.getvalue()) < 200_000
    answer = _upload(client, buf.getvalue(), "quality=75", "bomb.png")
    assert answer.status_code == 400
    assert answer.json()["error"] == "bomb.png: image is over the limit of 262144 pixels"
    # and the server goes on working
    assert client.get("/api/info").status_code == 200


def test_concurrency_is_bounded():
    with TestClient(create_app(workers=1, queue=0)) as c:
        first = _upload(c, PHOTO.read_bytes(), "quality=50")
        second = _upload(c, PHOTO.read_bytes(), "quality=50")
        assert first.status_code == 202
        assert second.status_code == 503 and "busy" in second.json()["error"]
        assert _wait(c, first.json()["job"])["state"] == "done"
        assert _upload(c, PHOTO.read_bytes(), "quality=50").status_code == 202


def test_sample_comparison_is_shared(client):
    a = client.post("/api/compare?quality=30&sample=kodim23.png")
    b = client.post("/api/compare?quality=30&sample=kodim23.png")
    assert a.status_code == b.status_code == 202 and a.json() == b.json()
    result = _wait(client, a.json()["job"])["result"]
    assert (result["name"], result["width"], result["height"]) == ("kodim23.png", 768, 512)


def test_failing_jobs_report_one_line_and_the_pool_goes_on():
    jobs = Jobs(workers=1, queue=2)

    def bad_input(progress):
        raise NicError("a reason")

    def bug(progress):
        return 1 // 0

    def fine(progress):
        progress(1, 2, "half way")
        return 42

    submitted = [jobs.submit(f) for f in (bad_input, bug, fine)]
    deadline = time.monotonic() + 30
    while any(j.state not in ("done", "error") for j in submitted) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [j.status()["state"] for j in submitted] == ["error", "error", "done"]
    assert submitted[0].error == "a reason"
    assert submitted[1].error == "internal error: ZeroDivisionError: integer division or modulo by zero"
    assert submitted[2].result == 42 and submitted[2].done == submitted[2].total == 2
    jobs.shutdown()


def test_a_busy_port_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NicError, match=f"port {port} on 127.0.0.1 is busy"):
            bind(port)
        with pytest.raises(NicError, match="--port must be from 0 to 65535"):
            bind(70000)
        cli = run_nic("serve", "--port", str(port))
    assert cli.returncode == 1
    assert cli.stderr == f"nic: error: port {port} on 127.0.0.1 is busy (another server is using it); " \
                         "choose another with --port\n"
