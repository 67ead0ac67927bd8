"""`nic serve` in a real browser: Debian's Chromium, driven by Selenium.

Without chromium this test skips, except under CI (CI=true), where it fails: `make test` installs
the browser there (`make browser`). Set NIC_SCREENSHOT=path.png to keep the screenshot.
"""

from __future__ import annotations

import io
import os
import shutil
import urllib.request

import numpy as np
import pytest
from PIL import Image

from nic import codec
from nic.eval.metrics import psnr, ssim_rgb
from nic.io import read_image

from .browser import chrome, chromium_paths, nic_serve
from .conftest import DATA

UPLOAD = DATA / "kodim05-crop.png"  # 128x96, a crop of Kodak 5

if chromium_paths() is None:
    if os.environ.get("CI"):
        pytest.fail("CI: chromium and chromedriver are missing (make browser installs them)", pytrace=False)
    pytest.skip("chromium and chromedriver are not installed (make browser)", allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

PIXEL_SUM = """
const img = document.getElementById(arguments[0]);
if (!img.complete || !img.naturalWidth) return [false, 0, 0, 0];  // still loading: nothing to draw yet
const c = document.createElement("canvas");
c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext("2d");
g.drawImage(img, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let sum = 0;
for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
return [img.complete, img.naturalWidth, img.naturalHeight, sum];
"""


def _rows(driver) -> dict[str, dict[str, str]]:
    rows = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#table tbody tr"):
        rows[tr.get_attribute("data-key")] = {td.get_attribute("class"): td.text
                                              for td in tr.find_elements(By.TAG_NAME, "td")}
    return rows


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _shown(driver, timeout: float, previous: str | None = None) -> str:
    """Wait until a comparison (another than `previous`) is on the page with its images loaded."""
    def ready(d):
        shown = d.find_element(By.ID, "results").get_attribute("data-shown")
        error = d.find_element(By.ID, "error")
        assert not error.is_displayed(), f"the page shows an error: {error.text}"
        return shown if shown and shown != previous else None
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(ready)


def test_compare_page_in_chromium(tmp_path):
    with nic_serve() as server, chrome() as driver:
        driver.get(server.url)
        # the page opens on the shipped sample, then the user uploads a photo of their own
        first = _shown(driver, 180)
        assert driver.find_element(By.ID, "title").text.startswith("kodim23.png, 768x512")
        assert list(_rows(driver)) == ["nic", "jpeg", "webp", "avif"]
        driver.find_element(By.ID, "file").send_keys(str(UPLOAD))
        job = _shown(driver, 120, first)
        assert driver.find_element(By.ID, "title").text.startswith("kodim05-crop.png, 128x96")

        # the numbers: nic's file is the one `nic compress -q 75` writes; the others fit in its size
        rows = _rows(driver)
        assert list(rows) == ["nic", "jpeg", "webp", "avif"]
        source = read_image(UPLOAD)
        expected = codec.encode(source, 75)
        decoded = codec.decode(expected).rgb
        assert _number(rows["nic"]["bytes"]) == len(expected)
        assert rows["nic"]["setting"] == "quality 75"
        assert rows["nic"]["bpp"] == f"{len(expected) * 8 / (128 * 96):.3f}"
        assert rows["nic"]["psnr"] == f"{psnr(source.rgb, decoded):.2f}"
        assert rows["nic"]["ssim"] == f"{ssim_rgb(source.rgb, decoded):.4f}"
        for key in ("jpeg", "webp", "avif"):
            assert 0 < _number(rows[key]["bytes"]) <= len(expected)
            assert 20 < _number(rows[key]["psnr"]) < 60 and 0.5 < _number(rows[key]["ssim"]) <= 1

        # the downloads: the .nic file itself, and its decoded PNG
        links = {a.text: a.get_attribute("href")
                 for a in driver.find_elements(By.CSS_SELECTOR, "#table tr.nic a")}
        assert _fetch(links[".nic"]) == expected
        png = Image.open(io.BytesIO(_fetch(links["decoded PNG"])))
        assert png.format == "PNG" and np.array_equal(np.asarray(png), decoded)

        # both images rendered, with nic's pixels on the left and JPEG's on the right
        left = driver.execute_script(PIXEL_SUM, "img-left")
        right = driver.execute_script(PIXEL_SUM, "img-right")
        assert left == [True, 128, 96, int(decoded.astype(np.int64).sum())]
        assert right[:3] == [True, 128, 96] and right[3] != left[3]
        assert driver.find_element(By.ID, "label-right").text == "JPEG (4:2:0)"

        # drag the swipe line to a quarter of the width: the right image is clipped there
        stage = driver.find_element(By.ID, "stage")
        width = stage.rect["width"]
        ActionChains(driver).move_to_element(stage).click_and_hold().move_by_offset(-width / 4, 0).release().perform()
        value = int(driver.find_element(By.ID, "swipe").get_attribute("value"))
        assert 230 <= value <= 270
        assert driver.execute_script("return document.getElementById('img-right').style.clipPath") == \
            f"inset(0px 0px 0px {value / 10:g}%)"

        # other pair, and zoom to actual pixels: one image pixel per screen pixel
        Select(driver.find_element(By.ID, "right")).select_by_value("original")
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(PIXEL_SUM, "img-right")[3] == int(source.rgb.astype(np.int64).sum()))
        Select(driver.find_element(By.ID, "zoom")).select_by_value("1")
        assert stage.size == {"width": 128, "height": 96}

        screenshot = tmp_path / "serve.png"
        assert driver.save_screenshot(str(screenshot))
        assert Image.open(screenshot).size[0] >= 1000
        if os.environ.get("NIC_SCREENSHOT"):
            shutil.copy(screenshot, os.environ["NIC_SCREENSHOT"])

        # bad uploads: a clear message on the page, and the server goes on serving
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"this is not a picture")
        driver.find_element(By.ID, "file").send_keys(str(bad))
        error = WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
        assert error.text == "notes.png: not an image that Pillow can read"
        huge = tmp_path / "huge.png"
        huge.write_bytes(bytes(26 * 1024 * 1024))
        driver.find_element(By.ID, "file").send_keys(str(huge))
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "error").text.startswith("huge.png"))
        assert error.text == "huge.png: 26.0 MB is over the limit of 25 MB"
        assert _fetch(f"{server.url}api/jobs/{job}/nic.nic") == expected
        assert server.process.poll() is None
