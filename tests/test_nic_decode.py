"""nic_decode, the decoder without PyTorch, against nic itself: its integer networks bit for bit
on real latents, every golden file (comcnn's within their tolerance, from the wheel's bundle),
fresh files (a fine layer, metadata, a folded strip; conv-ae, the retired factorized, comcnn),
nic's errors on damaged files, and an import with torch blocked."""

from __future__ import annotations

import importlib.util
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
from nic.container import LATENT_SECTION, Header, pack, unpack
from nic.errors import FormatError as NicFormatError
from nic.errors import NicError
from nic.models import registry
from nic_decode import bundle, comcnn, decoder, png, synthesis
from nic_decode import weights as nd_weights
from nic_decode.decoder import load_model
from nic_decode.latent import CONTEXT, PARAM_NET, coding_net
from tests.conftest import DATA

GOLDEN = DATA / "golden"
CASES = json.loads((GOLDEN / "manifest.json").read_text())["files"]
EXACT = ("hyperprior", "checkerboard", "conv-ae", "factorized")  # comcnn decodes in float only
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
    ours_model = load_model(header.model, header.weights_hash)
    latent, ours_g_s = ours_model.latent, ours_model.synthesis
    coding = nd_weights.find(header.model, header.weights_hash).coding
    z = model.decode_z(streams[0], 64, 128, True)
    hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    np.testing.assert_array_equal(latent.h_s(hwc(z)), hwc(model.coding["h_s"](z)))
    y_hat = model.decompress_latent(streams, 64, 128, header.quality)
    ours = latent.decode(streams, 64, 128, header.quality, True)
    np.testing.assert_array_equal(ours, y_hat[0].numpy())
    np.testing.assert_array_equal(ours_g_s.g_s(ours.transpose(1, 2, 0)), hwc(model.coding["g_s"](y_hat)))
    near = neighbours(y_hat.double()).reshape(1, -1, 1, 32)  # the 12 neighbours of all 4 x 8 positions
    hyper = model.coding["h_s"](z).reshape(1, -1, 1, 32)
    context = coding_net(coding, "context", CONTEXT, 12)
    param_net = coding_net(coding, "param_net", PARAM_NET, 12)
    ctx_ref = model.coding["context"](near.double())
    np.testing.assert_array_equal(context(hwc(near)), hwc(ctx_ref))
    joined = torch.cat([hyper, ctx_ref], dim=1)
    np.testing.assert_array_equal(param_net(hwc(joined)), hwc(model.coding["param_net"](joined)))


@pytest.mark.fast
@pytest.mark.parametrize("case", [c for c in CASES if c["model"] in EXACT], ids=lambda c: c["nic"])
def test_golden_file_decodes_to_nics_exact_pixels(case):
    data = (GOLDEN / case["nic"]).read_bytes()
    with Image.open(GOLDEN / case["png"]) as img:
        expected = np.asarray(img).copy()
    got = nic_decode.decode(data)
    np.testing.assert_array_equal(got, expected[..., None] if expected.ndim == 2 else expected)


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


def _factorized_file(photo: np.ndarray, quality: int) -> bytes:
    """A fresh file of the retired factorized model, which no longer encodes (its archive keeps
    only what decoding needs): nic's factorized latent coder codes the hyperprior's g_a latent
    of the photo (the factorized transforms started from the hyperprior's), packed as nic does."""
    import torch

    whash = unpack((GOLDEN / "factorized-q50-rgb.nic").read_bytes())[0].weights_hash
    factorized, hyperprior = registry.load("factorized", whash).model, registry.load("hyperprior").model
    with torch.no_grad():
        y = hyperprior.g_a(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255)
    (stream,) = factorized.compress_latent(y, quality)
    return pack(Header("factorized", whash, quality, photo.shape[1], photo.shape[0]), [(LATENT_SECTION, stream)])


@pytest.mark.fast
def test_fresh_conv_ae_and_factorized_files_decode_as_nic_does(photo, monkeypatch):
    """conv-ae from nic's encoder (RGB, grey), factorized through nic's latent coder (its
    sides multiples of 16), each also in tiles of 32 pixels: exact either way."""
    files = [nic.compress(Image.fromarray(photo), model="conv-ae", quality=80),
             nic.compress(Image.fromarray(photo[:50, :70, 0]), model="conv-ae", quality=20),
             _factorized_file(photo, 35), _factorized_file(photo[:48, :80], 100)]
    assert [unpack(f)[0].model for f in files] == ["conv-ae"] * 2 + ["factorized"] * 2
    expected = [_nic_pixels(data) for data in files]
    for data, want in zip(files, expected, strict=True):
        np.testing.assert_array_equal(nic_decode.decode(data), want)
    spans = synthesis.spans
    monkeypatch.setattr(synthesis, "ONE_PASS", 0)
    monkeypatch.setattr(synthesis, "SYNTHESIS_TILE", 32)  # 8 latent pixels (conv-ae), 2 (factorized)
    calls = []
    monkeypatch.setattr(synthesis, "spans", lambda *a: calls.append(a) or spans(*a))
    tiles = []
    for data, want in zip(files, expected, strict=True):
        calls.clear()
        np.testing.assert_array_equal(nic_decode.decode(data), want)
        tiles.append((len(spans(*calls[0])), len(spans(*calls[1]))))
    assert tiles == [(3, 4), (2, 3), (3, 4), (2, 3)]  # rows x columns of tiles


@pytest.mark.fast
@pytest.mark.parametrize("name", ["conv-ae-q60-la.nic", "factorized-q50-rgb.nic"])
def test_damaged_factorized_latent_files_get_nics_messages(name):
    """A stream zeroed, cut short, or doubled: one line, nic's."""
    data = (GOLDEN / name).read_bytes()
    header, sections = unpack(data)
    kinds = [kind for kind, _ in sections]
    stream = sections[kinds.index(LATENT_SECTION)][1]
    with_stream = lambda new: pack(header, [(k, new if k == LATENT_SECTION else s) for k, s in sections])  # noqa: E731
    mutants = [with_stream(bytes(len(stream))), with_stream(stream[:-4]),
               pack(header, [(LATENT_SECTION, stream), *sections])]
    for mutant in mutants:
        ours, theirs = _errors(mutant)
        assert ours == theirs and "\n" not in ours


@pytest.mark.fast
def test_bundle_packing_is_exact_and_damage_is_one_line():
    """What the wheel's bundles store compactly (conv-ae's coding tensors, counts as second
    differences) reads back bit for bit; a damaged pack is a one-line NicError."""
    coding = nd_weights.find("conv-ae", registry.load("conv-ae").weights_hash).coding
    packed = bundle.pack(coding)
    assert len(packed) < sum(a.nbytes for a in coding.values()) / 2
    unpacked = bundle.unpack(packed, "conv-ae")
    assert unpacked.keys() == coding.keys()
    for name, a in coding.items():
        assert unpacked[name].dtype == a.dtype or name.endswith(".counts"), name
        np.testing.assert_array_equal(unpacked[name], a)
    with pytest.raises(nic_decode.NicError, match="^conv-ae: damaged model file") as e:
        bundle.unpack(packed[:-9], "conv-ae")
    assert "\n" not in str(e.value)


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


@pytest.fixture(scope="module")
def comcnn_bundle(tmp_path_factory) -> Path:
    """comcnn's shipped and archived weights as the wheel bundles them (RecCNN's graphs), made
    by the wheel's build script: nic's own install has no graph to run RecCNN with."""
    spec = importlib.util.spec_from_file_location("build_decoder_wheel", ROOT / "scripts" / "build_decoder_wheel.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path_factory.mktemp("models")
    for name, path in script.weights_files():
        if name == "comcnn":
            script.export_weights(name, path, out)
    return out


@pytest.fixture
def bundled_only(comcnn_bundle, monkeypatch):
    """nic_decode as the wheel installs it: no nic weights beside it, only its bundle."""
    monkeypatch.setattr(nd_weights, "model_dirs", lambda: [])
    monkeypatch.setattr(bundle, "MODELS", comcnn_bundle)
    decoder.rec_cnn.cache_clear()
    yield
    decoder.rec_cnn.cache_clear()


COMCNN = [c for c in CASES if c["model"] == "comcnn"]


@pytest.mark.parametrize("case", COMCNN, ids=lambda c: c["nic"])
def test_comcnn_golden_files_decode_within_their_tolerance(case, bundled_only):
    assert case["max_abs_diff"] == 1
    data = (GOLDEN / case["nic"]).read_bytes()
    with Image.open(GOLDEN / case["png"]) as img:
        expected = np.asarray(img).astype(int)
    assert np.abs(nic_decode.decode(data, exact=False).astype(int) - expected).max() <= case["max_abs_diff"]


def test_comcnn_fresh_file_tiles_exact_and_errors(photo, bundled_only, monkeypatch):
    """A fresh file within a level of nic's decode, in one tile and in RecCNN tiles of 32 pixels;
    --exact refused as nic refuses it; a cut JPEG or a second one is nic's one line; without
    Pillow, one line naming the extra."""
    data = nic.compress(Image.fromarray(photo[:60, :90]), model="comcnn", quality=60)
    theirs = np.asarray(nic.decompress(data)).astype(int)
    assert np.abs(nic_decode.decode(data, exact=False).astype(int) - theirs).max() <= 1
    monkeypatch.setattr(comcnn, "REC_TILE", 32)
    assert np.abs(nic_decode.decode(data, exact=False).astype(int) - theirs).max() <= 1
    with pytest.raises(NicError) as nic_exact:
        nic.decompress(data, exact=True)
    with pytest.raises(nic_decode.NicError) as ours_exact:
        nic_decode.decode(data)
    assert str(ours_exact.value) == str(nic_exact.value)
    header, sections = unpack(data)
    jpeg = next(s for k, s in sections if k == LATENT_SECTION)
    for mutant in (pack(header, [(k, s[:-1] if k == LATENT_SECTION else s) for k, s in sections]),
                   pack(header, [(LATENT_SECTION, jpeg), *sections])):
        with pytest.raises(NicFormatError) as nic_error:
            nic.decompress(mutant)
        with pytest.raises(nic_decode.FormatError) as ours:
            nic_decode.decode(mutant, exact=False)
        assert str(ours.value) == str(nic_error.value) and "JPEG section" in str(ours.value)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(nic_decode.NicError, match=r"^comcnn files hold a JPEG.*'nic-decode\[comcnn\]'$"):
        nic_decode.decode(data, exact=False)
