"""Files outlive a weights release: replaced or retired weights are archived under their hash
and files made with them still decode to the same pixels; broken user models are skipped, not
fatal."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as st_save

import nic
from nic import container
from nic.errors import FormatError, NicError
from nic.models import registry
from nic.runtime import store
from nic.runtime.weights import deserialize, serialize
from tests.conftest import DATA, archived_weights_hash, run_nic

SHIPPED = registry.WEIGHTS_DIR / f"{registry.DEFAULT_MODEL}.safetensors"
GOLDEN = DATA / "golden"
# the golden file made with the factorized model, shipped until it was retired on 2026-11-30
(RETIRED_CASE,) = [c for c in json.loads((GOLDEN / "manifest.json").read_text())["files"] if c["model"] == "factorized"]


def retrained(data: bytes) -> bytes:
    """The same model with slightly different encoder weights: a new release's file."""
    tensors, config = deserialize(data, "test")
    tensors["g_a.0.bias"] = tensors["g_a.0.bias"] + 0.01
    return st_save(tensors, metadata={"format": "nic-weights-1", "config": json.dumps(config)})


@pytest.fixture()
def user_models(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("NIC_MODEL_DIR", str(folder))
    return folder


def test_a_weights_release_keeps_old_files_decoding(user_models, photo, tmp_path):
    shutil.copy(SHIPPED, user_models / "mine.safetensors")
    shutil.copy(SHIPPED.with_suffix(".json"), user_models / "mine.json")
    old_file = nic.compress(photo, quality=40, model="mine")
    old_pixels = np.asarray(nic.decompress(old_file, exact=True))  # the fast decoder is not bit-exact

    new = retrained(SHIPPED.read_bytes())
    archived = store.install(user_models, "mine", new, b"{}", force=True)
    assert archived == store.archived_path(user_models, "mine", container.unpack(old_file)[0].weights_hash)
    assert archived.read_bytes() == SHIPPED.read_bytes() and archived.with_suffix(".json").is_file()
    assert (user_models / "mine.safetensors").read_bytes() == new

    new_file = nic.compress(photo, quality=40, model="mine")
    assert container.unpack(new_file)[0].weights_hash != container.unpack(old_file)[0].weights_hash
    assert np.array_equal(np.asarray(nic.decompress(old_file, exact=True)), old_pixels)  # same pixels as before
    nic.decompress(new_file)

    # a fresh process (as after an upgrade) finds the archived weights by the header's hash
    (tmp_path / "old.nic").write_bytes(old_file)
    r = run_nic("decompress", tmp_path / "old.nic", "-o", tmp_path / "old.png", "--exact", env=dict(
        __import__("os").environ, NIC_MODEL_DIR=str(user_models)))
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "old.png")), old_pixels)

    archived.unlink()  # without the archive the old file is refused, clearly
    with pytest.raises(FormatError, match="other weights .* nor an archived copy"):
        nic.decompress(old_file)


def test_install_refuses_without_force_and_keeps_identical_weights(user_models):
    data = SHIPPED.read_bytes()
    assert store.install(user_models, "mine", data, b"{}") is None
    with pytest.raises(NicError, match="already exists"):
        store.install(user_models, "mine", data, b"{}")
    assert store.install(user_models, "mine", data, b"{}", force=True) is None  # same weights: nothing archived
    assert not (user_models / store.ARCHIVE).exists()


def test_ship_weights_script(tmp_path):
    import subprocess
    import sys

    into = tmp_path / "weights"
    into.mkdir()
    shutil.copy(SHIPPED, into / "hyperprior.safetensors")
    shutil.copy(SHIPPED.with_suffix(".json"), into / "hyperprior.json")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "hyperprior.safetensors").write_bytes(retrained(SHIPPED.read_bytes()))
    (tmp_path / "new" / "hyperprior.json").write_text("{}")
    script = Path(__file__).parent.parent / "scripts" / "ship_weights.py"

    def ship(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, script, *args, "--into", into], capture_output=True, text=True,
                              timeout=120)

    r = ship(tmp_path / "new" / "hyperprior.safetensors")
    assert r.returncode == 0, r.stderr
    old_hash = registry.weights_hash_of(SHIPPED)
    assert store.archived_path(into, "hyperprior", old_hash).read_bytes() == SHIPPED.read_bytes()
    assert (into / "hyperprior.json").read_text() == "{}"

    # --retire: only a model listed in RETIRED, and its weights and card go to the archive
    r = ship("--retire", "hyperprior")
    assert r.returncode == 1 and "add 'hyperprior' to RETIRED" in r.stderr
    assert (into / "hyperprior.safetensors").is_file()
    r = ship("--retire", "factorized")
    assert r.returncode == 1 and "factorized.safetensors: no such model to retire" in r.stderr
    old = store.archived_path(registry.WEIGHTS_DIR, "factorized", archived_weights_hash("factorized"))
    shutil.copy(old, into / "factorized.safetensors")
    shutil.copy(old.with_suffix(".json"), into / "factorized.json")
    r = ship("--retire", "factorized")
    assert r.returncode == 0 and f"retired in favour of {registry.DEFAULT_MODEL!r}" in r.stdout, r.stderr
    assert not (into / "factorized.safetensors").exists() and not (into / "factorized.json").exists()
    moved = store.archived_path(into, "factorized", archived_weights_hash("factorized"))
    assert moved.read_bytes() == old.read_bytes() and moved.with_suffix(".json").read_bytes() == \
        old.with_suffix(".json").read_bytes()


def fake_weights(config: dict) -> bytes:
    return st_save({"x": torch.zeros(4)}, metadata={"format": "nic-weights-1", "config": json.dumps(config)})


def test_broken_user_models_are_skipped_or_refused_by_name(user_models, tmp_path, photo):
    shutil.copy(DATA / "kodim05-crop.png", tmp_path / "photo.png")
    (user_models / "badcard.safetensors").write_bytes(b"whatever")
    (user_models / "badcard.json").write_text("{not json")
    (user_models / "junk.safetensors").write_bytes(b"\x00" * 100)
    (user_models / "huge.safetensors").write_bytes(fake_weights({"architecture": "hyperprior", "N": 20000, "M": 20000}))
    (user_models / "typed.safetensors").write_bytes(fake_weights({"architecture": "hyperprior", "N": "96"}))
    (user_models / "extra.safetensors").write_bytes(fake_weights({"architecture": "hyperprior", "rm": 1}))
    env = dict(__import__("os").environ, NIC_MODEL_DIR=str(user_models))

    r = run_nic("models", env=env)
    assert r.returncode == 0 and f"{registry.DEFAULT_MODEL} (default)" in r.stdout
    assert r.stderr.strip() == f"nic: warning: skipping model 'badcard': {user_models / 'badcard.json'} " \
                               "is not a readable model card (JSONDecodeError)"
    r = run_nic("compress", "photo.png", "--model", "huge", cwd=tmp_path, env=env)
    assert r.returncode == 1 and "huge.safetensors: config value N=20000" in r.stderr
    assert "internal error" not in r.stderr and not (tmp_path / "photo.nic").exists()
    with pytest.warns(UserWarning, match="skipping model 'badcard'"):
        data = nic.compress(photo, quality=30)
    nic.decompress(data)
    for model, needle in [("junk", "junk.safetensors: not a nic weights file"),
                          ("typed", "typed.safetensors: config value N='96'"),
                          ("extra", "extra.safetensors: config key 'rm' is not an argument"),
                          ("badcard", "unknown model 'badcard'")]:
        with pytest.raises(NicError, match=needle):
            nic.compress(photo, model=model)


def test_a_config_too_large_for_its_file_is_refused_before_building():
    # within the per-value bounds, but describing ~1.6 G parameters in a 16-byte file
    data = fake_weights({"architecture": "hyperprior", "N": 4096, "M": 4096})
    with pytest.raises(NicError, match="far larger than the file's weights"):
        registry.from_bytes("big", data, source="big.safetensors")
    bad_meta = struct.pack("<Q", 2) + b"{}"
    with pytest.raises(NicError, match="x.safetensors: not a nic weights file"):
        registry.from_bytes("x", bad_meta, source="x.safetensors")


def test_golden_files_decode_after_the_default_weights_are_replaced(tmp_path, monkeypatch):
    """The next release ships a retrained default: files of this release must not notice."""
    weights = tmp_path / "weights"
    shutil.copytree(registry.WEIGHTS_DIR, weights)
    monkeypatch.setattr(store, "WEIGHTS_DIR", weights)
    store.install(weights, registry.DEFAULT_MODEL, retrained(SHIPPED.read_bytes()), b"{}", force=True)
    golden = DATA / "golden"
    cases = [c for c in json.loads((golden / "manifest.json").read_text())["files"]
             if c["model"] == registry.DEFAULT_MODEL]
    assert cases
    for case in cases:
        data = (golden / case["nic"]).read_bytes()
        assert container.unpack(data)[0].weights_hash != registry.weights_hash_of(weights / SHIPPED.name)
        with Image.open(golden / case["png"]) as png:
            assert np.array_equal(np.asarray(nic.decompress(data, exact=True)), np.asarray(png))


def test_a_retired_model_is_not_offered_but_its_files_still_decode(tmp_path, photo):
    """factorized left the package on 2026-11-30; files made with it decode from the archive."""
    whash = bytes.fromhex(RETIRED_CASE["weights_hash"])
    assert registry.RETIRED == {"factorized": registry.DEFAULT_MODEL} and "factorized" not in registry.available()
    archived = store.archived_path(registry.WEIGHTS_DIR, "factorized", whash)
    assert registry.weights_hash_of(archived) == whash and archived.with_suffix(".json").is_file()
    r = run_nic("models")
    assert r.returncode == 0 and f"{registry.DEFAULT_MODEL} (default)" in r.stdout
    assert not [line for line in r.stdout.splitlines() if line.startswith("factorized")]

    retired = (f"model 'factorized' was retired in favour of {registry.DEFAULT_MODEL!r} "
               "(files made with it still decode)")
    shutil.copy(DATA / "kodim05-crop.png", tmp_path / "photo.png")
    for args in (("compress", "photo.png", "--model", "factorized"),
                 ("eval", ".", "--out", "results", "--models", "factorized", "--codecs", "none")):
        r = run_nic(*args, cwd=tmp_path)
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [f"nic: error: {retired}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]
    with pytest.raises(NicError, match=retired.replace("(", r"\(").replace(")", r"\)")):
        nic.compress(photo, model="factorized")
    with pytest.raises(ValueError, match=f"was retired in favour of {registry.DEFAULT_MODEL!r}"):
        Image.fromarray(photo).save(tmp_path / "x.nic", model="factorized")

    with Image.open(GOLDEN / RETIRED_CASE["png"]) as png:
        expected = np.asarray(png).copy()
    data = (GOLDEN / RETIRED_CASE["nic"]).read_bytes()
    assert container.unpack(data)[0].weights_hash == whash
    assert np.array_equal(np.asarray(nic.decompress(data, exact=True)), expected)
    r = run_nic("decompress", GOLDEN / RETIRED_CASE["nic"], "-o", tmp_path / "back.png", "--exact")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), expected)


def test_a_retired_models_files_without_its_archive_are_refused_clearly(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    shutil.copytree(registry.WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("factorized-*"))
    monkeypatch.setattr(store, "WEIGHTS_DIR", weights)
    with pytest.raises(FormatError, match="weights of the retired model 'factorized' .* not in the archive"):
        nic.decompress((GOLDEN / RETIRED_CASE["nic"]).read_bytes())


def test_a_user_model_may_take_a_retired_name_and_old_files_still_decode(user_models, photo):
    """Training your own factorized model (configs/factorized-cpu.toml) and exporting it under
    that name makes it the model that encodes; files of the retired weights still decode."""
    torch.manual_seed(0)
    config = {"architecture": "factorized", "N": 16, "M": 8}
    model = registry.build(**config).eval()
    model.load_coding(model.export_coding())
    store.install(user_models, "factorized", serialize(model, config), b"{}")
    assert "factorized" in registry.available()
    data = nic.compress(photo, quality=50, model="factorized")
    assert container.unpack(data)[0].weights_hash == registry.weights_hash_of(user_models / "factorized.safetensors")
    assert np.asarray(nic.decompress(data)).shape == photo.shape
    with Image.open(GOLDEN / RETIRED_CASE["png"]) as png:
        old = nic.decompress((GOLDEN / RETIRED_CASE["nic"]).read_bytes(), exact=True)
        assert np.array_equal(np.asarray(old), np.asarray(png))
