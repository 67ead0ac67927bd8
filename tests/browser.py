"""A real `nic serve` process and a headless system Chromium driven by Selenium.

Shared by the browser test (tests/test_serve_browser.py) and the first-load benchmark
(benchmarks/serve_first_load.py). Chromium and chromedriver come from Debian
(`apt-get install chromium chromium-driver`, which `make browser` runs); nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) from PATH, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chrome(width: int = 1200, height: int = 1400) -> Iterator:
    """A headless Chromium session at a fixed window size (device pixel ratio 1)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are not installed (make browser installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Server:
    url: str
    startup_s: float  # from starting the process to the address printed (model loaded, port bound)
    process: subprocess.Popen
    output: list[str]  # what it printed after its address (read all along, so it never blocks)


@contextmanager
def nic_serve(*args: str) -> Iterator[Server]:
    """Run `python -m nic serve --port 0 ARGS` until the block ends, then stop it with Ctrl-C."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nic", "serve", "--port", "0", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        seen = []
        for line in proc.stdout:  # the server prints its address once it listens
            if line.startswith("nic serve: http://127.0.0.1:"):
                break
            seen.append(line)
        else:
            raise RuntimeError("nic serve did not start: " + "".join(seen))
        server = Server(line.split()[2], time.perf_counter() - start, proc, [])
        threading.Thread(target=server.output.extend, args=(proc.stdout,), daemon=True).start()
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
