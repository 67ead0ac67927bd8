"""nic_decode, the decoder without PyTorch, against nic itself: its integer networks bit for bit
on real latents, every golden file of the models it decodes, fresh files (a fine layer, metadata,
a folded strip), nic's errors on damaged files, and an import with torch blocked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nic
import nic_decode
from nic.container import LATENT_SECTION, unpack
from nic.errors import FormatError as NicFormatError
from nic.errors import NicError
from nic.models import registry
from nic_decode import png
from nic_decode import weights as nd_weights
from nic_decode.decoder import load_model
from nic_decode.latent import CONTEXT, PARAM_NET, coding_net
from tests.conftest import DATA

GOLDEN = DATA / "golden"
CASES = json.loads((GOLDEN / "manifest.json").read_text())["files"]
DECODED = ("hyperprior", "checkerboard")
ROOT = Path(__file__).resolve().parent.parent


def _nic_pixels(data: bytes) -> np.ndarray:
    """nic's exact decode as (H, W, C), the layout nic_decode returns."""
    px = np.asarray(nic.decompress(data, exact=True))
    return px[..., None] if px.ndim == 2 else px


@pytest.fixture(scope="module")
def coded(photo) -> tuple[bytes, object]:
    """A real photo coded at quality 40 by the shipped default, and nic's model of it."""
    data = nic.compress(Image.fromarray(photo[:64, :96]), quality=40)
    header, _ = unpack(data)
    return data, registry.load(header.model, header.weights_hash).model


@pytest.mark.fast
def test_integer_networks_match_nics_bit_for_bit(coded):
    """h_s, the context networks and g_s on the latents of a real file, and the decoded ŷ."""
    import torch

    from nic.entropy.checkerboard import neighbours

    data, model = coded
    header, sections = unpack(data)
    assert header.model == registry.DEFAULT_MODEL == "checkerboard"
    streams = [s for kind, s in sections if kind == LATENT_SECTION]
    _, latent, synthesis = load_model(header.model, header.weights_hash)
    coding = nd_weights.find(header.model, header.weights_hash).coding
    z = model._decode_z(streams[0], 64, 128, True)
    hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    np.testing.assert_array_equal(latent.h_s(hwc(z)), hwc(model.coding["h_s"](z)))
    y_hat = model.decompress_latent(streams, 64, 128, header.quality)
    ours = latent.decode(streams, 64, 128, header.quality, True)
    np.testing.assert_array_equal(ours, y_hat[0].numpy())
    np.testing.assert_array_equal(synthesis.g_s(ours.transpose(1, 2, 0)), hwc(model.coding["g_s"](y_hat)))
    near = neighbours(y_hat.double()).reshape(1, -1, 1, 32)  # the 12 neighbours of all 4 x 8 positions
    hyper = model.coding["h_s"](z).reshape(1, -1, 1, 32)
    context = coding_net(coding, "context", CONTEXT, 12)
    param_net = coding_net(coding, "param_net", PARAM_NET, 12)
    ctx_ref = model.coding["context"](near.double())
    np.testing.assert_array_equal(context(hwc(near)), hwc(ctx_ref))
    joined = torch.cat([hyper, ctx_ref], dim=1)
    np.testing.assert_array_equal(param_net(hwc(joined)), hwc(model.coding["param_net"](joined)))


@pytest.mark.fast
@pytest.mark.parametrize("case", [c for c in CASES if c["model"] in DECODED], ids=lambda c: c["nic"])
def test_golden_file_decodes_to_nics_exact_pixels(case):
    data = (GOLDEN / case["nic"]).read_bytes()
    with Image.open(GOLDEN / case["png"]) as img:
        expected = np.asarray(img).copy()
    got = nic_decode.decode(data)
    np.testing.assert_array_equal(got, expected[..., None] if expected.ndim == 2 else expected)


@pytest.mark.fast
@pytest.mark.parametrize("case", [c for c in CASES if c["model"] not in DECODED][:1], ids=lambda c: c["nic"])
def test_other_models_are_refused_in_one_line(case):
    with pytest.raises(nic_decode.NicError, match="does not decode yet"):
        nic_decode.decode((GOLDEN / case["nic"]).read_bytes())


@pytest.mark.fast
def test_fresh_files_decode_as_nic_does(photo, photo2):
    """A fine layer (quality 75), a version 4 file (EXIF), a folded thin strip, grey + alpha."""
    exif = Image.Exif()
    exif[0x010E] = "nic_decode test"
    buf = io.BytesIO()
    Image.fromarray(photo2).save(buf, format="PNG", exif=exif)
    with_exif = Image.open(io.BytesIO(buf.getvalue()))
    strip = Image.fromarray(photo[:6, :128].repeat(3, axis=1))  # 6 x 384: folded
    la = Image.fromarray(np.dstack([photo[:40, :50, 1], photo[:40, :50, 0]]), "LA")
    files = [nic.compress(Image.fromarray(photo), quality=75), nic.compress(with_exif, quality=60),
             nic.compress(strip, quality=30), nic.compress(la, quality=55, model="hyperprior")]
    versions = [unpack(f)[0].version for f in files]
    assert versions == [3, 4, 2, 3] and unpack(files[2])[0].fold
    for data in files:
        np.testing.assert_array_equal(nic_decode.decode(data), _nic_pixels(data))


def _errors(data: bytes) -> tuple[str, str]:
    with pytest.raises(NicFormatError) as theirs:
        nic.decompress(data, exact=True)
    with pytest.raises(nic_decode.FormatError) as ours:
        nic_decode.decode(data)
    return str(ours.value), str(theirs.value)


def _recrc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.fast
def test_damaged_files_get_nics_messages():
    data = (GOLDEN / "checkerboard-q10-rgb.nic").read_bytes()
    last = len(unpack(data)[1][-1][1])  # the last section: the non-anchor stream, at the file's end
    mutants = [data[:20],  # shorter than a header
               data[:-1],  # checksum
               data[:4] + b"\x09" + data[5:],  # version
               _recrc(data[:5] + b"\x02" + data[6:-4]),  # reserved flag
               _recrc(data[:-8]),  # sections longer than the file
               _recrc(data[:-4 - last] + bytes(last))]  # a stream zeroed
    for mutant in mutants:
        ours, theirs = _errors(mutant)
        assert ours == theirs.replace("this nic reads", "this decoder reads")


@pytest.mark.fast
def test_png_round_trip_and_pillows_filters(photo):
    for pixels in (photo[:9, :7], photo[:9, :7, :1], photo[:9, :7, :2], np.dstack([photo[:9, :7], photo[:9, :7, 0]])):
        with Image.open(io.BytesIO(png.encode(pixels))) as img:
            got = np.asarray(img)
        np.testing.assert_array_equal(got.reshape(pixels.shape), pixels)
    alpha = photo[:, :, 1]
    buf = io.BytesIO()
    Image.fromarray(alpha, "L").save(buf, format="PNG", optimize=True)  # as nic writes alpha sections
    np.testing.assert_array_equal(png.decode_alpha(buf.getvalue(), *alpha.shape), alpha)


_NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['nic'] = None; sys.modules['PIL'] = None; "
             "import runpy; sys.argv = ['nic_decode', *sys.argv[1:]]; "
             "runpy.run_module('nic_decode', run_name='__main__')")


def test_command_line_runs_without_torch(tmp_path):
    """The CLI, with torch, nic and Pillow unimportable: writes nic's pixels, refuses to overwrite,
    and a damaged file is one line and exit status 1, with no output left."""
    src = GOLDEN / "checkerboard-q90-fine-rgba.nic"
    out = tmp_path / "out.png"
    run = lambda *args: subprocess.run([sys.executable, "-c", _NO_TORCH, *map(str, args)],  # noqa: E731
                                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    done = run(src, out, "--exact")
    assert done.returncode == 0, done.stderr
    with Image.open(out) as got, Image.open(GOLDEN / "checkerboard-q90-fine-rgba.png") as want:
        assert got.mode == want.mode and np.array_equal(np.asarray(got), np.asarray(want))
    again = run(src, out)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = tmp_path / "bad.nic"
    bad.write_bytes(src.read_bytes()[:-1])
    failed = run(bad, tmp_path / "bad.png")
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1 and "checksum mismatch" in failed.stderr
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.fast
def test_the_pixel_limit_is_nics(monkeypatch):
    """Refused by the header's size, then by the padded work times the model's cost, as nic does."""
    data = (GOLDEN / "checkerboard-q10-rgb.nic").read_bytes()  # 72 x 56, padded to 128 x 64
    for limit in ("4000", "5000"):
        monkeypatch.setenv("NIC_MAX_PIXELS", limit)
        with pytest.raises(NicError) as theirs:
            nic.decompress(data, exact=True)
        with pytest.raises(nic_decode.NicError) as ours:
            nic_decode.decode(data)
        assert str(ours.value) == str(theirs.value)
