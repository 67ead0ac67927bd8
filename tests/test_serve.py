"""`nic serve` without a browser: the JSON API on real photos, bad uploads, limits, busy ports,
slow clients, foreign pages, Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
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
from nic.serve.app import bind, create_app, serve
from nic.serve.jobs import Jobs

from .conftest import DATA, run_nic

PHOTO = DATA / "kodim05-crop.png"


def _client(app) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1")  # the server answers only for its own address


@pytest.fixture(scope="module")
def client():
    with _client(create_app(workers=1, queue=1, max_pixels=512 * 512, max_upload=200_000)) as c:
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
    with _client(create_app(workers=1, queue=0)) as c:
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


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_an_identical_result_has_a_null_psnr(client):
    flat = _png(np.full((16, 24, 3), 128, np.uint8))  # WebP codes this exactly
    job = _upload(client, flat, "quality=90").json()["job"]
    assert _wait(client, job)["state"] == "done"
    answer = client.get(f"/api/jobs/{job}")  # was HTTP 500: JSON has no infinity
    assert answer.status_code == 200
    coded = answer.json()["result"]["coded"]
    source = np.full((16, 24, 3), 128, np.uint8)
    identical = {c["key"] for c in coded if c["psnr"] is None}
    assert identical, "no codec came back exact: the test shows nothing"
    for c in coded:
        data = client.get(f"/api/jobs/{job}/{c['key']}.{c['ext']}").content
        decoded = codec.decode(data).rgb if c["key"] == "nic" else classic.decode(data)
        assert (c["key"] in identical) == np.array_equal(decoded, source)
    assert 'v === null ? "∞' in client.get("/static/app.js").text


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (10, 30)])
def test_images_too_small_for_ssim_have_no_ssim(client, shape):
    rng = np.random.default_rng(1)
    job = _upload(client, _png(rng.integers(0, 256, (*shape, 3), np.uint8)), "quality=50").json()["job"]
    status = _wait(client, job)
    assert status["state"] == "done", status  # was an SSIM ValueError for a side of 1 px
    assert all(c["ssim"] is None and c["psnr"] > 0 for c in status["result"]["coded"])


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "--workers must be at least 1, got 0"),
    ({"workers": -1}, "--workers must be at least 1, got -1"),
    ({"queue": -1}, "--queue must be 0 or more, got -1"),
])
def test_bad_worker_and_queue_counts_are_one_line(kwargs, message):
    with pytest.raises(NicError, match=f"^{message}$"):
        serve(port=0, **kwargs)


def test_bad_worker_count_on_the_command_line():
    cli = run_nic("serve", "--port", "0", "--workers", "0")
    assert (cli.returncode, cli.stderr) == (1, "nic: error: --workers must be at least 1, got 0\n")


async def _post(app, chunks: list[bytes], complete: bool = True, query: str = "quality=50") -> tuple[int, dict]:
    """POST /api/compare straight into the app (no socket), the client sending `chunks` and then,
    unless `complete`, nothing more (a slow client): the answer's status and JSON."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/compare", "raw_path": b"/api/compare", "query_string": query.encode(),
             "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if complete:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # never sends the rest

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def test_slow_uploads_time_out_and_uploads_held_at_once_are_capped():
    app = create_app(max_upload=1000, max_held=1500, upload_seconds=0.5)

    async def scenario():
        slow = asyncio.create_task(_post(app, [bytes(800)], complete=False))
        await asyncio.sleep(0.1)
        # the slow upload holds 800 bytes: 800 more would be over the cap of 1500
        assert await _post(app, [bytes(800)]) == \
            (503, {"error": "the server is busy receiving other uploads; try again in a moment"})
        started = time.monotonic()
        assert await slow == (408, {"error": "the upload did not arrive within 0.5 s"})
        assert time.monotonic() - started < 1
        # and what it held is given back: the same upload is read (and found not to be an image)
        status, answer = await _post(app, [bytes(800)])
        assert status == 400 and "not an image" in answer["error"]

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_busy_is_said_before_the_upload_is_read():
    app = create_app(workers=1, queue=0)
    gate = threading.Event()
    app.state.comparisons.jobs.submit(lambda progress: gate.wait(10))
    try:
        # a client that never sends its body gets the answer at once: nothing was read or decoded
        answer = asyncio.run(asyncio.wait_for(_post(app, [b"not an image"], complete=False), 5))
        assert answer[0] == 503 and "busy" in answer[1]["error"]
    finally:
        gate.set()
        app.state.comparisons.jobs.shutdown()


def test_foreign_hosts_and_origins_are_refused():
    with TestClient(create_app(port=8000), base_url="http://127.0.0.1:8000") as c:
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST:8000"):
            assert c.get(f"http://{host}/api/info").status_code == 200, host
        for host in ("evil.example:8000", "127.0.0.1.evil.example:8000", "127.0.0.1:9000", "localhost"):
            answer = c.get(f"http://{host}/api/info")  # a DNS name rebound to 127.0.0.1, another port
            assert answer.status_code == 403 and "answers only for localhost" in answer.json()["error"], host
        # a foreign page's form post (text/plain needs no preflight) gets no job
        cross = c.post("/api/compare?quality=50", content=PHOTO.read_bytes(),
                       headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        assert cross.status_code == 403 and cross.json() == \
            {"error": "cross-origin request from 'http://evil.example' refused"}
        assert c.post("/api/compare?quality=50", headers={"Origin": "null"}).status_code == 403
        # the page's own posts, and posts without an Origin (curl), go on to the checks
        for headers in ({"Origin": "http://127.0.0.1:8000"}, {}):
            own = c.post("/api/compare?quality=50", headers=headers)
            assert own.status_code == 400 and own.json()["error"].startswith("no image"), headers
    with TestClient(create_app(), base_url="http://localhost:5555") as c:  # the port unknown: any port
        assert c.get("/api/info").status_code == 200


def test_ctrl_c_stops_serve_without_waiting_for_the_comparison():
    server = subprocess.Popen([sys.executable, "-m", "nic", "serve", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        address = server.stdout.readline()  # the sample is coding by now
        port = int(re.fullmatch(r"nic serve: http://127.0.0.1:(\d+)/ \(Ctrl-C to stop\)\n", address)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:  # and an upload is half-sent
            slow.sendall(b"POST /api/compare?quality=50 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         b"Content-Length: 100000\r\n\r\n%s" % (port, bytes(50_000)))
            time.sleep(0.3)
            started = time.monotonic()
            server.send_signal(signal.SIGINT)
            _, err = server.communicate(timeout=60)
        assert time.monotonic() - started < 3  # was the rest of the comparison: 11 s here, 29-44 s for a photo
        assert (server.returncode, err) == (130, "nic: interrupted\n")  # and no traceback for the upload
    finally:
        server.kill()
        server.wait()
