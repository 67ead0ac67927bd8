"""Files outlive a weights release: replaced or retired weights are archived under their hash,
cut to what decoding needs, and files made with them still decode to the same pixels; broken
user models are skipped, not fatal; shipped cards and configs name no machine's folders."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as st_save

import nic
from nic import codec, container
from nic.errors import FormatError, NicError
from nic.io import picture_from_array
from nic.models import registry
from nic.runtime import store
from nic.runtime.weights import cut_from, deserialize, serialize, weights_hash
from nic.train.checkpoint import init_from
from tests.conftest import DATA, run_nic

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = registry.WEIGHTS_DIR / f"{registry.DEFAULT_MODEL}.safetensors"
ARCHIVED = sorted((registry.WEIGHTS_DIR / store.ARCHIVE).glob("*.safetensors"))
GOLDEN = DATA / "golden"
# An absolute path of the machine that made a file (a home, a work or temp folder, a Windows
# drive), and the run codes and session numbers of the lab's diaries: shipped files have none.
MACHINE_PATH = re.compile(r"/(?:work|home|root|tmp|Users)/|\b[A-Za-z]:\\")
RUN_CODE = re.compile(r"\bSC\d|\b[Ss]ession \d|-s\d\d\b")
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
    archived = store.install(user_models, "mine", new, b"{}", registry.decode_only, force=True)
    assert archived == store.archived_path(user_models, "mine", container.unpack(old_file)[0].weights_hash)
    assert cut_from(archived.read_bytes()) == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()  # decode-only
    card = json.loads(archived.with_suffix(".json").read_text())
    assert card["sha256"] == json.loads(SHIPPED.with_suffix(".json").read_text())["sha256"]
    assert card["decode_only"]["size_bytes"] == archived.stat().st_size < 0.7 * SHIPPED.stat().st_size
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


@pytest.mark.fast
def test_install_refuses_without_force_and_keeps_identical_weights(user_models):
    data = SHIPPED.read_bytes()
    assert store.install(user_models, "mine", data, b"{}", registry.decode_only) is None
    with pytest.raises(NicError, match="already exists"):
        store.install(user_models, "mine", data, b"{}", registry.decode_only)
    # the same weights: nothing archived
    assert store.install(user_models, "mine", data, b"{}", registry.decode_only, force=True) is None
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
    archived = store.archived_path(into, "hyperprior", old_hash)
    assert cut_from(archived.read_bytes()) == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert registry.weights_hash_of(archived) == old_hash  # its card vouches for the cut
    assert (into / "hyperprior.json").read_text() == "{}"

    # --retire: only a model listed in RETIRED, and its weights and card go to the archive
    r = ship("--retire", "hyperprior")
    assert r.returncode == 1 and "add 'hyperprior' to RETIRED" in r.stderr
    assert (into / "hyperprior.safetensors").is_file()
    r = ship("--retire", "factorized")
    assert r.returncode == 1 and "factorized.safetensors: no such model to retire" in r.stderr
    full = tiny_factorized()
    (into / "factorized.safetensors").write_bytes(full)
    (into / "factorized.json").write_text('{"note": "kept"}')
    r = ship("--retire", "factorized")
    assert r.returncode == 0 and f"retired in favour of {registry.DEFAULT_MODEL!r}" in r.stdout, r.stderr
    assert not (into / "factorized.safetensors").exists() and not (into / "factorized.json").exists()
    moved = store.archived_path(into, "factorized", weights_hash(full))
    assert cut_from(moved.read_bytes()) == hashlib.sha256(full).hexdigest()
    assert json.loads(moved.with_suffix(".json").read_text())["note"] == "kept"
    assert registry.weights_hash_of(moved) == weights_hash(full)


def tiny_factorized() -> bytes:
    """A small factorized model's weights file, as `nic export` writes one."""
    torch.manual_seed(0)
    config = {"architecture": "factorized", "N": 16, "M": 8}
    model = registry.build(**config).eval()
    model.load_coding(model.export_coding())
    return serialize(model, config)


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


@pytest.mark.fast
def test_a_config_too_large_for_its_file_is_refused_before_building():
    # within the per-value bounds, but describing ~1.6 G parameters in a 16-byte file
    data = fake_weights({"architecture": "hyperprior", "N": 4096, "M": 4096})
    with pytest.raises(NicError, match="far larger than the file's weights"):
        registry.from_bytes("big", data, source="big.safetensors")
    bad_meta = struct.pack("<Q", 2) + b"{}"
    with pytest.raises(NicError, match="x.safetensors: not a nic weights file"):
        registry.from_bytes("x", bad_meta, source="x.safetensors")


@pytest.mark.fast
def test_golden_files_decode_after_the_default_weights_are_replaced(tmp_path, monkeypatch):
    """The next release ships a retrained default: files of this release must not notice."""
    weights = tmp_path / "weights"
    shutil.copytree(registry.WEIGHTS_DIR, weights)
    monkeypatch.setattr(store, "WEIGHTS_DIR", weights)
    store.install(weights, registry.DEFAULT_MODEL, retrained(SHIPPED.read_bytes()), b"{}", registry.decode_only,
                  force=True)
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


@pytest.mark.fast
def test_a_retired_models_files_without_its_archive_are_refused_clearly(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    shutil.copytree(registry.WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("factorized-*"))
    monkeypatch.setattr(store, "WEIGHTS_DIR", weights)
    with pytest.raises(FormatError, match="weights of the retired model 'factorized' .* not in the archive"):
        nic.decompress((GOLDEN / RETIRED_CASE["nic"]).read_bytes())


@pytest.mark.fast
def test_a_user_model_may_take_a_retired_name_and_old_files_still_decode(user_models, photo):
    """Training your own factorized model (configs/factorized-cpu.toml) and exporting it under
    that name makes it the model that encodes; files of the retired weights still decode."""
    store.install(user_models, "factorized", tiny_factorized(), b"{}", registry.decode_only)
    assert "factorized" in registry.available()
    data = nic.compress(photo, quality=50, model="factorized")
    assert container.unpack(data)[0].weights_hash == registry.weights_hash_of(user_models / "factorized.safetensors")
    assert np.asarray(nic.decompress(data)).shape == photo.shape
    with Image.open(GOLDEN / RETIRED_CASE["png"]) as png:
        old = nic.decompress((GOLDEN / RETIRED_CASE["nic"]).read_bytes(), exact=True)
        assert np.array_equal(np.asarray(old), np.asarray(png))


@pytest.mark.fast
@pytest.mark.parametrize("archived", ARCHIVED, ids=lambda p: p.name)
def test_the_archive_keeps_only_what_decoding_needs(archived):
    """An archived release only decodes old files: its file is the decode-only cut of the full
    one, which its card and the name (the hash .nic headers carry) identify."""
    data = archived.read_bytes()
    tensors, config = deserialize(data, archived.name)
    encoder = registry.ARCHITECTURES[config["architecture"]].encoder_params
    assert encoder and not [k for k in tensors if k.startswith(encoder)]
    card = json.loads(archived.with_suffix(".json").read_text())
    assert cut_from(data) == card["sha256"] and card["sha256"][:16] == archived.stem.rsplit("-", 1)[1]
    assert card["decode_only"] == {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    assert registry.weights_hash_of(archived).hex() == archived.stem.rsplit("-", 1)[1]
    assert not [p for p in registry.WEIGHTS_DIR.glob("*.safetensors") if cut_from(p.read_bytes())]  # current: whole


def test_an_archived_release_decodes_but_never_encodes(user_models, photo, tmp_path):
    archived = store.archived_path(registry.WEIGHTS_DIR, "hyperprior", bytes.fromhex("7ed6bc144ba9eb8c"))
    lm = registry.load("hyperprior", bytes.fromhex("7ed6bc144ba9eb8c"))
    assert lm.decode_only and lm.weights_hash.hex() == "7ed6bc144ba9eb8c"
    with pytest.raises(NicError, match="archived release, kept only to decode the files made with it"):
        codec.encode(picture_from_array(photo), 50, lm)
    with pytest.raises(NicError, match="decode-only weights .* cannot start a run"):
        init_from(registry.build(**deserialize(archived.read_bytes(), "x")[1]), archived)

    # the cut installed as a user model: `nic compress` refuses it in one line
    shutil.copy(archived, user_models / "old.safetensors")
    shutil.copy(archived.with_suffix(".json"), user_models / "old.json")
    shutil.copy(DATA / "kodim05-crop.png", tmp_path / "photo.png")
    r = run_nic("compress", "photo.png", "--model", "old", cwd=tmp_path,
                env=dict(__import__("os").environ, NIC_MODEL_DIR=str(user_models)))
    assert r.returncode == 1 and "cannot encode" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "photo.nic").exists()


@pytest.mark.fast
def test_a_decode_only_cut_counts_only_as_its_card_records_it(tmp_path, monkeypatch):
    """A cut cannot prove which full file it came from: a cut its card does not record (another
    release's under this name, an altered or missing card) is refused, never decoded with."""
    weights = tmp_path / "weights"
    shutil.copytree(registry.WEIGHTS_DIR, weights)
    monkeypatch.setattr(store, "WEIGHTS_DIR", weights)
    (case,) = [c for c in json.loads((GOLDEN / "manifest.json").read_text())["files"]
               if c["weights_hash"] == "b31ebeb484afd0a3"]
    data = (GOLDEN / case["nic"]).read_bytes()
    path = store.archived_path(weights, "hyperprior", bytes.fromhex(case["weights_hash"]))
    card_path, good, card = path.with_suffix(".json"), path.read_bytes(), path.with_suffix(".json").read_text()
    refused = f"{path}: decode-only weights that its card {card_path.name} does not vouch for"

    shutil.copy(store.archived_path(weights, "hyperprior", bytes.fromhex("b916a9325601a343")), path)
    with pytest.raises(NicError, match=re.escape(refused)):
        nic.decompress(data, exact=True)
    path.write_bytes(good)
    card_path.write_text(card.replace(json.loads(card)["decode_only"]["sha256"], "0" * 64))
    with pytest.raises(NicError, match=re.escape(refused)):
        nic.decompress(data, exact=True)
    card_path.unlink()
    with pytest.raises(NicError, match=re.escape(refused)):
        nic.decompress(data, exact=True)
    card_path.write_text(card)
    with Image.open(GOLDEN / case["png"]) as png:
        assert np.array_equal(np.asarray(nic.decompress(data, exact=True)), np.asarray(png))


CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


@pytest.mark.fast
@pytest.mark.parametrize("path", [*sorted(registry.WEIGHTS_DIR.glob("**/*.json")), *CONFIGS],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_cards_and_configs_name_no_machine_folders_or_runs(path):
    """Cards go into the wheel and configs are read by users: neither names a folder of the
    machine that trained (a data path, a run's checkpoint) nor a run code of the lab's diaries."""
    text = path.read_text()
    assert MACHINE_PATH.findall(text) == [] and RUN_CODE.findall(text) == []


@pytest.mark.fast
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_config_continues_from_shipped_weights_or_from_scratch(path):
    init = tomllib.loads(path.read_text()).get("run", {}).get("init", "")
    assert init == "" or init.startswith("nic/weights/") and store.ARCHIVE not in init and (ROOT / init).is_file()
