"""`nic serve`: the compare page and its small JSON API (Starlette, served by uvicorn on 127.0.0.1).

    GET  /                          the page (static HTML/JS/CSS shipped with the package)
    GET  /api/info                  samples, models, the quality scale, limits: what the page offers
    POST /api/compare?quality=Q     body: the image file's bytes (or empty with &sample=NAME);
         /api/compare?bpp=B         also &model=NAME. Answers {"job": ID} at once, or {"error": ...}
    GET  /api/jobs/ID               progress, then the numbers
    GET  /api/jobs/ID/KEY.EXT       a result: original.png, nic.nic, nic.png, jpeg.jpg, jpeg.png, ...

The image is uploaded as the raw request body: refused at once when the server is busy, read
under a byte limit, a time limit and a cap on all uploads held at once as it streams in, and
checked for its pixel count before it is decoded. Only requests addressed to this machine's
loopback names are answered, and only same-origin posts (DNS rebinding, cross-site forms).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nic.errors import NicError
from nic.io import Picture, encode_image, read_image, read_image_bytes
from nic.models import registry
from nic.quality import DEFAULT_QUALITY, QUALITY_MAX, QUALITY_MIN, check_quality
from nic.serve.compare import FILE_TYPES, compare
from nic.serve.jobs import Busy, Job, Jobs

HERE = Path(__file__).resolve().parent
STATIC, SAMPLES = HERE / "static", HERE / "samples"
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_HELD_BYTES = 4 * MAX_UPLOAD_BYTES  # all uploads in memory at once: slow clients cannot pile them up
UPLOAD_SECONDS = 60.0  # a whole upload must arrive within this (25 MB over loopback takes well under 1 s)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
MAX_PIXELS = 2048 * 2048  # coding takes seconds per megapixel on a CPU: bigger uploads are refused
MAX_BPP = 24  # a target size above raw 8-bit RGB asks for nothing
Rate = tuple[int | None, float | None]  # (quality, bpp): exactly one is given


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _quick_png(picture: Picture) -> bytes:
    """A PNG for the page to show: the same pixels, a quarter of the default level's time."""
    buf = io.BytesIO()
    picture.to_pil().save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def samples() -> list[str]:
    return sorted(p.name for p in SAMPLES.glob("*.png"))


def _stem(name: str) -> str:
    """A safe file-name stem for downloads, from whatever the browser said the file was called."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "image"


class Uploads:
    """Reads request bodies under a per-upload limit, a time limit, and a cap on the bytes that all
    uploads hold at once, counted as they stream in (the server runs them on one event loop)."""

    def __init__(self, limit: int, cap: int, seconds: float):
        self.limit, self.cap, self.seconds, self.held = limit, cap, seconds, 0

    @contextlib.asynccontextmanager
    async def read(self, request: Request) -> AsyncIterator[bytes]:
        """The body, counted against the cap until the block ends (the caller decodes it there)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise self._too_big()
        chunks: list[bytes] = []
        try:
            try:
                async with asyncio.timeout(self.seconds):
                    await self._receive(request, chunks)
            except TimeoutError:
                raise BadRequest(f"the upload did not arrive within {self.seconds:g} s", 408) from None
            yield b"".join(chunks)
        finally:
            self.held -= sum(map(len, chunks))

    async def _receive(self, request: Request, chunks: list[bytes]) -> None:
        size = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            self.held += len(chunk)
            if size > self.limit:
                raise self._too_big()
            if self.held > self.cap:
                raise BadRequest("the server is busy receiving other uploads; try again in a moment", 503)

    def _too_big(self) -> BadRequest:
        return BadRequest(f"the upload is over the limit of {self.limit // (1024 * 1024)} MB", 413)


def _host(host: str) -> tuple[str, str]:
    """(name, port) of a Host header; the port is "" when absent."""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name.lower() + "]", rest.removeprefix(":")
    name, _, port = host.partition(":")
    return name.lower(), port


def _foreign(headers: Headers, method: str, port: int | None) -> str:
    """Why a request is refused, or "": its Host must name this machine's loopback (and `port`, when
    known), and a post's Origin, when sent, must be the page's own."""
    host = headers.get("host", "")
    name, given = _host(host)
    ports = {str(port), ""} if port == 80 else {str(port)}  # browsers leave the default port out
    if name not in LOCAL_HOSTS or (port is not None and given not in ports):
        return f"this server answers only for {', '.join(LOCAL_HOSTS)} on its own port, not {host!r}"
    origin = headers.get("origin")
    if method not in ("GET", "HEAD") and origin is not None and origin != f"http://{host}":
        return f"cross-origin request from {origin!r} refused"
    return ""


class LocalOnly:
    """Answers 403 to requests that a foreign web page makes through the browser of the person
    running the server: a rebound DNS name in Host, or another site's Origin on a post."""

    def __init__(self, app, port: int | None = None):
        self.app, self.port = app, port

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            refusal = _foreign(Headers(scope=scope), scope["method"], self.port)
            if refusal:
                await JSONResponse({"error": refusal}, 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _rate(params) -> Rate:
    quality, bpp = params.get("quality"), params.get("bpp")
    if (quality is None) == (bpp is None):
        raise BadRequest(f"give either quality ({QUALITY_MIN}-{QUALITY_MAX}) or bpp (a target size in bits per pixel)")
    try:
        if quality is not None:
            return check_quality(int(quality)), None
        value = float(bpp)
    except ValueError:
        raise BadRequest(f"not a number: {quality if quality is not None else bpp!r}") from None
    except NicError as e:
        raise BadRequest(str(e)) from None
    if not 0 < value <= MAX_BPP:
        raise BadRequest(f"bpp must be above 0 and at most {MAX_BPP}, got {bpp}")
    return None, value


def _model(params) -> str:
    name = params.get("model") or registry.DEFAULT_MODEL
    cards = registry.available()
    if name not in cards:
        raise BadRequest(str(registry.unknown_model(name, cards)))
    return name


class Comparisons:
    """The coding side of the page: jobs for uploads and samples; a sample's comparison at given
    settings is made once and shared (its inputs never change)."""

    def __init__(self, workers: int, queue: int):
        self.jobs = Jobs(workers, queue)
        self._samples: dict[tuple, str] = {}

    def upload(self, name: str, picture: Picture, rate: Rate, model: str) -> Job:
        # every codec is scored on the same colour (or grey) planes; alpha is left out, as in `nic eval`
        picture.keep_metadata(strip=True)  # colours to sRGB
        colours = Picture(picture.pixels)  # and no metadata: a stranger's EXIF, GPS and XMP are never kept
        return self.jobs.submit(lambda progress: (name, picture.alpha is not None,
                                                  compare(colours, *rate, model, progress=progress)))

    def sample(self, sample: str, rate: Rate, model: str) -> Job:
        key = (sample, *rate, model)
        self._samples = {k: v for k, v in self._samples.items() if self.jobs.get(v)}  # drop forgotten jobs
        job = self.jobs.get(self._samples.get(key, ""))
        if job is None or job.state == "error":
            def work(progress):
                return sample, False, compare(Picture(read_image(SAMPLES / sample).pixels), *rate, model,
                                              progress=progress)
            job = self.jobs.submit(work)
            self._samples[key] = job.id
        return job


def create_app(workers: int = 1, queue: int = 4, max_pixels: int = MAX_PIXELS,
               max_upload: int = MAX_UPLOAD_BYTES, max_held: int = MAX_HELD_BYTES,
               upload_seconds: float = UPLOAD_SECONDS, port: int | None = None) -> Starlette:
    """The app; `port`, when given, is the only one a request's Host may name."""
    comparisons = Comparisons(workers, queue)
    jobs = comparisons.jobs
    uploads = Uploads(max_upload, max_held, upload_seconds)
    reading = asyncio.Semaphore(2)  # decoding uploads is bounded too, apart from the coding jobs

    async def info(request: Request) -> Response:
        return JSONResponse({"samples": samples(), "models": sorted(registry.available()),
                             "default_model": registry.DEFAULT_MODEL, "quality_min": QUALITY_MIN,
                             "quality_max": QUALITY_MAX, "default_quality": DEFAULT_QUALITY, "max_bpp": MAX_BPP,
                             "max_upload_bytes": max_upload, "max_pixels": max_pixels,
                             "workers": workers, "queue": queue})

    async def start(request: Request) -> Response:
        try:
            rate = _rate(request.query_params)
            model = _model(request.query_params)
            sample = request.query_params.get("sample")
            if sample is not None:
                if sample not in samples():
                    raise BadRequest(f"no sample called {sample!r}")
                job = comparisons.sample(sample, rate, model)
            else:
                jobs.check()  # busy: say so before reading or decoding anything
                async with uploads.read(request) as body:
                    if not body:
                        raise BadRequest("no image: drop or pick a file, or take a sample")
                    name = unquote(request.headers.get("x-filename", "")) or "upload"
                    async with reading:
                        jobs.check()  # it may have filled while the upload streamed in
                        picture = await run_in_threadpool(read_image_bytes, body, name, max_pixels)
                job = comparisons.upload(name, picture, rate, model)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, e.status)
        except NicError as e:
            return JSONResponse({"error": str(e)}, 400)
        except Busy as e:
            return JSONResponse({"error": str(e)}, 503)
        return JSONResponse({"job": job.id}, 202)

    async def status(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        if job is None:
            return JSONResponse({"error": "no such comparison (the server keeps the last few)"}, 404)
        out = job.status()
        if job.state == "done":
            name, had_alpha, comparison = job.result
            out["result"] = comparison.summary() | {"name": name, "alpha_dropped": had_alpha}
        return JSONResponse(out)

    async def file(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        key, _, ext = request.path_params["name"].partition(".")
        if job is None or job.state != "done":
            return JSONResponse({"error": "no such comparison"}, 404)
        name, _, comparison = job.result
        download = bool(request.query_params.get("download"))
        picture = comparison.picture(key)
        if picture is None or ext not in ("png", FILE_TYPES.get(key, ("png",))[0]):
            return JSONResponse({"error": "no such file"}, 404)
        headers = {"Cache-Control": "private, max-age=3600"}
        if download:
            filename = f"{_stem(name)}{'' if key == 'original' else '-' + key}.{ext}"
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        if ext != "png":
            data = next(c.data for c in comparison.coded if c.key == key)
            return Response(data, media_type=FILE_TYPES[key][1], headers=headers)
        # on the page, a quickly made PNG; downloaded, the PNG that `nic decompress` writes
        png = await run_in_threadpool(encode_image if download else _quick_png, picture)
        return Response(png, media_type="image/png", headers=headers)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/info", info),
        Route("/api/compare", start, methods=["POST"]),
        Route("/api/jobs/{job}", status),
        Route("/api/jobs/{job}/{name}", file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(LocalOnly, port=port)])
    app.state.comparisons = comparisons
    return app


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1, or a one-line error (a busy port says so)."""
    if not 0 <= port <= 65535:
        raise NicError(f"--port must be from 0 to 65535, got {port}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise NicError(f"port {port} on 127.0.0.1 is busy (another server is using it); "
                           "choose another with --port") from None
        raise NicError(f"cannot listen on 127.0.0.1:{port} ({e.strerror})") from None
    return sock


class _QuietStop(logging.Filter):
    """Drops uvicorn's tracebacks for the requests that stopping cancels (a slow upload still open
    a second after Ctrl-C): cancelling them is the point, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        cancelled = record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)
        return not cancelled and "graceful shutdown exceeded" not in record.getMessage()


def serve(port: int = 8000, workers: int = 1, queue: int = 4) -> None:
    """Serve the compare page until interrupted; prints the address once it is ready."""
    import uvicorn

    if workers < 1:
        raise NicError(f"--workers must be at least 1, got {workers}")
    if queue < 0:
        raise NicError(f"--queue must be 0 or more, got {queue}")
    sock = bind(port)
    registry.load(registry.DEFAULT_MODEL)  # load the default model now, not during the first request
    app = create_app(workers, queue, port=sock.getsockname()[1])
    jobs = app.state.comparisons.jobs
    if samples():  # the page opens on the first sample: start coding it now
        app.state.comparisons.sample(samples()[0], (DEFAULT_QUALITY, None), registry.DEFAULT_MODEL)
    # open requests get a second to finish once stopped: a slow upload does not hold the exit
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1))
    logging.getLogger("uvicorn.error").addFilter(_QuietStop())
    print(f"nic serve: http://127.0.0.1:{sock.getsockname()[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.run(sockets=[sock])
        if server.should_exit:  # uvicorn took the Ctrl-C; its re-raise can be lost in asyncio's own handler
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        jobs.shutdown()  # queued comparisons are dropped
        if jobs.running():
            # Python would wait at exit for the comparison in its worker thread (up to a minute);
            # it writes no file and keeps nothing worth waiting for, so the process ends now
            print("nic: interrupted", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(130)
        raise
    finally:
        jobs.shutdown()
        sock.close()
