"""How long `nic serve`'s page takes to show its first comparison, in a real headless Chromium.

Each run starts a fresh server (`nic serve --port 0`), opens the page as soon as the server has
printed its address, and times until the shipped sample's comparison (the numbers and both
images) is on screen; then reloads the page (the sample's result is kept) and times that too.
Prints a table, writes JSON, and can save a screenshot of the page.

    python benchmarks/serve_first_load.py --runs 3 --screenshot docs/serve.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import chrome, nic_serve  # noqa: E402


def shown(driver, previous: str | None = None, timeout: float = 300) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        value = d.find_element(By.ID, "results").get_attribute("data-shown")
        return value if value and value != previous else None
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(ready)


def one_run(screenshot: Path | None) -> dict:
    from selenium.webdriver.common.by import By

    with chrome(1200, 1500) as driver, nic_serve() as server:
        start = time.perf_counter()
        driver.get(server.url)
        job = shown(driver)
        first = time.perf_counter() - start
        status = json.loads(driver.execute_script(f"return fetch('/api/jobs/{job}').then(r => r.text())"))
        start = time.perf_counter()
        driver.refresh()
        shown(driver)
        again = time.perf_counter() - start
        if screenshot:
            driver.execute_script("const s = document.getElementById('swipe'); s.value = 420;"
                                  "s.dispatchEvent(new Event('input'));")
            driver.save_screenshot(str(screenshot))
        rows = [tr.text for tr in driver.find_elements(By.CSS_SELECTOR, "#table tbody tr")]
    return {"server_start_s": server.startup_s, "first_load_s": first, "coding_s": status["seconds"],
            "coding_cpu_s": status["cpu_seconds"], "reload_s": again, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--screenshot", type=Path, help="save a screenshot of the last run's page here")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve.json")
    args = p.parse_args()
    load = os.getloadavg()[0]
    runs = [one_run(args.screenshot if i == args.runs - 1 else None) for i in range(args.runs)]
    print("| run | server start | first page load to comparison | coding (server, wall / CPU) | reload |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        print(f"| {i} | {r['server_start_s']:.2f} s | {r['first_load_s']:.2f} s | {r['coding_s']:.2f} s / "
              f"{r['coding_cpu_s']:.2f} s | {r['reload_s']:.2f} s |")
    print("\n".join(runs[-1]["rows"]))
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average_before": load, "runs": runs}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
