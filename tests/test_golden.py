"""Files written by earlier releases still decode to the pixels those releases gave.

tests/data/golden holds small .nic files made by scripts/make_golden.py, each with the PNG the
release that wrote it decoded it to, listed in manifest.json. Any change to the decoder, the
container or the shipped weights that alters a single pixel of them fails here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import nic
from nic.container import unpack
from nic.models import registry
from nic.runtime import store
from tests.conftest import DATA

pytestmark = pytest.mark.fast

GOLDEN = DATA / "golden"
CASES = json.loads((GOLDEN / "manifest.json").read_text())["files"]


def test_every_shipped_or_retired_model_and_image_kind_is_covered():
    shipped = {p.stem for p in registry.WEIGHTS_DIR.glob("*.safetensors")}
    assert {c["model"] for c in CASES} >= shipped | set(registry.RETIRED) >= {"hyperprior", "factorized"}
    assert {c["mode"] for c in CASES} >= {"RGB", "L", "RGBA", "LA"}


def test_every_weights_release_is_covered():
    """Each weights file the package holds, current or archived (named by the hash .nic headers
    carry), has a golden file: shipping new weights means adding one (make_golden.py --add)."""
    current = {registry.weights_hash_of(p).hex() for p in registry.WEIGHTS_DIR.glob("*.safetensors")}
    archived = {p.stem.rsplit("-", 1)[1] for p in (registry.WEIGHTS_DIR / store.ARCHIVE).glob("*.safetensors")}
    assert len(archived) >= 6 and current | archived <= {c["weights_hash"] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["nic"] for c in CASES])
def test_golden_file_decodes_to_its_pixels(case):
    data = (GOLDEN / case["nic"]).read_bytes()
    header, _ = unpack(data)
    assert (header.model, header.quality, header.weights_hash.hex()) == \
        (case["model"], case["quality"], case["weights_hash"])
    decoded = nic.decompress(data, exact=case["max_abs_diff"] == 0)  # the bit-exact promise is --exact's
    with Image.open(GOLDEN / case["png"]) as png:
        expected = np.asarray(png).copy()
        assert (decoded.mode, decoded.size) == (png.mode, tuple(case["size"]))
    got = np.asarray(decoded)
    if case["max_abs_diff"] == 0:
        np.testing.assert_array_equal(got, expected)
    else:  # a float decoder: exact on this machine, within the tolerance on another
        assert np.abs(got.astype(int) - expected).max() <= case["max_abs_diff"]
