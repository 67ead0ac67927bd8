"""Decompression bombs: a file must hold every symbol it claims, so a few bytes cannot ask
for a full-size decode; emptied or cut sections are format errors before any synthesis."""

from __future__ import annotations

import json

import pytest

import nic
from nic import container
from nic.errors import FormatError
from nic.runtime import tiling
from tests.conftest import DATA

pytestmark = pytest.mark.fast


@pytest.fixture()
def no_synthesis(monkeypatch) -> list:
    """Records any synthesis call: a bad file must be refused before the expensive part."""
    calls: list = []
    monkeypatch.setattr(tiling, "synthesise", lambda *args: calls.append(args))
    return calls


@pytest.mark.parametrize("version", [1, 2])
def test_the_59_byte_bomb_is_refused(photo, version, no_synthesis):
    h, _ = container.unpack(nic.compress(photo[:64, :64], quality=50, model="hyperprior"))
    h.width = h.height = 2048
    h.version = version
    bomb = container.pack(h, [(container.LATENT_SECTION, b""), (container.LATENT_SECTION, b"")])
    assert len(bomb) == 59
    with pytest.raises(FormatError, match="ends before its last symbol"):
        nic.decompress(bomb)
    assert not no_synthesis


def test_cut_or_padded_sections_are_refused(photo, no_synthesis):
    data = nic.compress(photo, quality=50, model="hyperprior")  # its two sections: z, y
    h, sections = container.unpack(data)
    (_, z), (_, y) = sections
    cases = [(z, y[:len(y) // 2 // 4 * 4]), (z[:len(z) // 2 // 4 * 4], y), (z, b""), (b"", y),
             (z, y + b"\x01\x00\x00\x00"), (z + b"\x00\x00\x00\x80", y)]
    cases += [(z, y[:-4 * k]) for k in range(1, 9)] + [(z, y[4 * k:]) for k in range(1, 9)]
    for z_cut, y_cut in cases:
        forged = container.pack(h, [(container.LATENT_SECTION, z_cut), (container.LATENT_SECTION, y_cut)])
        with pytest.raises(FormatError, match="entropy-coded section"):
            nic.decompress(forged)
    assert not no_synthesis


def test_cut_sections_of_version_1_files_are_refused(no_synthesis):
    """Golden files of release 168360f (format version 1, no stream terminator)."""
    golden = DATA / "golden"
    cases = [c for c in json.loads((golden / "manifest.json").read_text())["files"] if c["model"] != "comcnn"]
    cut = 0
    for case in cases:
        h, sections = container.unpack((golden / case["nic"]).read_bytes())
        if h.version != 1:  # later releases' files: tests/test_fine.py cuts those
            continue
        latents = [s for kind, s in sections if kind == container.LATENT_SECTION]
        rest = [(kind, s) for kind, s in sections if kind != container.LATENT_SECTION]
        for i, stream in enumerate(latents):
            for shorter in {b"", stream[:len(stream) // 8 * 4], stream[:-4], stream[4:]}:
                damaged = [(container.LATENT_SECTION, shorter if j == i else s) for j, s in enumerate(latents)]
                with pytest.raises(FormatError, match="entropy-coded section"):
                    nic.decompress(container.pack(h, damaged + rest))
                cut += 1
    assert cut >= 20 and not no_synthesis
