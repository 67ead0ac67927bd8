"""Training: the loss goes down, resume after kill -9 is exact, DDP runs, CIFAR is read
safely, and an exported run compresses and decompresses real images."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nic
from nic.cli import main
from nic.errors import NicError
from nic.models import registry
from nic.models.registry import ARCHITECTURES, build
from nic.train.checkpoint import init_from, load_checkpoint
from nic.train.config import resolve
from nic.train.data import holdout, load_cifar, load_sources
from nic.train.export import export
from nic.train.loop import fitted_steps, train
from nic.train.precision import Precision, candidates, fastest, native_bf16
from tests.conftest import DATA

TINY = ["model.architecture='hyperprior'", "model.N=16", "model.M=24", "data.crop=64", "data.batch=4",
        "run.threads=1", "run.log_every=5", f"data.sources=['{DATA}']", "optim.warmup=5", "optim.lr=2e-3",
        "optim.min_lr=2e-3", "run.precision='fp32'", "run.channels_last=false"]


def tiny_cfg(*extra: str) -> dict:
    return resolve(None, TINY + list(extra))


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss(tmp_path):
    result = train(tiny_cfg("optim.steps=60"), tmp_path / "run", progress=False)
    assert result["step"] == 60 and result["skipped"] == 0
    losses = [r["loss"] for r in read_log(tmp_path / "run") if "loss" in r]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert (tmp_path / "run" / "config.toml").read_text().count("N = 16") == 1


@pytest.mark.fast
def test_training_defaults_to_the_default_models_architecture():
    card = registry.available()[registry.DEFAULT_MODEL]
    assert resolve(None)["model"]["architecture"] == card["architecture"]


@pytest.mark.fast
def test_train_without_data_says_how_to_give_it(tmp_path, capsys):
    assert main(["train", str(tmp_path / "run"), "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nic: error: no training data") and "--data" in err and "data.sources" in err
    assert "\n" not in err and not (tmp_path / "run").exists()
    with pytest.raises(NicError, match="no training data"):
        train(resolve(None, ["model.architecture='hyperprior'", "optim.steps=1"]), tmp_path / "run2")


@pytest.mark.fast
def test_fitted_steps_fill_the_hours_left():
    assert fitted_steps(300, 400.0, 0.5, 1.0) == 300 + 6400  # 3,200 s left at 0.5 s a step
    assert fitted_steps(300, 4000.0, 0.5, 1.0) == 300  # over budget already: stop here


def test_a_run_given_hours_fits_its_step_count_at_the_end_of_warmup(tmp_path):
    run = tmp_path / "run"
    result = train(tiny_cfg("optim.hours=0.002", "optim.warmup=20", "optim.steps=5"), run, progress=False)
    fitted = [r["fitted"] for r in read_log(run) if "fitted" in r]
    assert len(fitted) == 1 and fitted[0]["steps"] > 20  # ran past steps=5 to time the warm-up
    assert fitted[0]["steps"] == fitted_steps(20, fitted[0]["spent_s"], fitted[0]["s_per_step"], 0.002)
    assert result["step"] == fitted[0]["steps"]  # and stopped there
    assert load_checkpoint(run / "checkpoint.pt")["config"]["optim"]["steps"] == result["step"]
    assert f"steps = {result['step']}" in (run / "config.toml").read_text()
    with pytest.raises(NicError, match="warmup of at least 20"):
        train(tiny_cfg("optim.hours=1.0"), tmp_path / "short-warmup", progress=False)


def nic_train(run: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "nic", "train", str(run), "--quiet"]
    for item in TINY + list(extra):
        args += ["--set", item]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_kill_gives_the_same_weights(tmp_path, precision):
    if precision == "bf16" and not native_bf16(torch.device("cpu")):
        pytest.skip("no native bf16 on this CPU: a bf16 run would fall back to fp32")
    steps = ["optim.steps=24", "run.checkpoint_every=6", f"run.precision='{precision}'", "run.channels_last='auto'"]
    assert nic_train(tmp_path / "straight", *steps).wait(timeout=300) == 0
    proc = nic_train(tmp_path / "killed", *steps)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < interrupted_at < 24
    resumed = subprocess.run([sys.executable, "-m", "nic", "train", str(tmp_path / "killed"),
                              "--resume", "--quiet"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    assert a["step"] == b["step"] == 24
    assert b["config"]["run"]["precision"] == precision
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert not list((tmp_path / "killed").glob("*.tmp"))


def test_ddp_with_two_cpu_processes(tmp_path):
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "nic", "train", str(run), "--quiet"]
    for item in TINY + ["optim.steps=6", "data.batch=4"]:
        args += ["--set", item]
    # faulthandler: if a rank dies of a signal, its Python stack leads stderr, before torchrun's report.
    res = subprocess.run(args, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1"))
    assert res.returncode == 0, f"stdout: {res.stdout[-1000:]}\nstderr: {res.stderr[:3000]}"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6
    assert "6 steps" in res.stdout


def cifar_tarball(path: Path, payload: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.fast
def test_cifar_tarball_is_read_with_a_restricted_unpickler(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
    # The same layout (and pickle protocol) as the tarball its authors distribute.
    batch = {b"filenames": [b"x.png"] * 10, b"fine_labels": list(range(10)), b"data": data}
    images = load_cifar(cifar_tarball(tmp_path / "c.tar.gz", pickle.dumps(batch, protocol=2)))
    assert len(images) == 10 and images[0].shape == (32, 32, 3)
    assert np.array_equal(images[3][:, :, 0].ravel(), data[3, :1024])


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.fast
def test_cifar_reader_rejects_other_classes(tmp_path):
    bad = cifar_tarball(tmp_path / "bad.tar.gz", pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(NicError, match="refusing to load"):
        load_cifar(bad)
    with pytest.raises(NicError, match="not a readable"):
        load_cifar(cifar_tarball(tmp_path / "junk.tar.gz", b"\x80\x02garbage"))


def test_export_then_compress_and_decompress(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("NIC_MODEL_DIR", str(tmp_path / "models"))
    train(tiny_cfg("optim.steps=10"), tmp_path / "run", progress=False)
    card = export(tmp_path / "run", "tiny-test", tmp_path / "models", kodak=DATA, qualities=[10, 90])
    points = card["rd"]["points"]
    assert card["training"]["steps"] == 10 and len(points) == 2 and card["rd"]["images"] == 2
    assert points[0]["bpp"] < points[1]["bpp"]
    with pytest.raises(NicError, match="already exists"):
        export(tmp_path / "run", "tiny-test", tmp_path / "models")
    data = nic.compress(photo, quality=50, model="tiny-test")
    out = np.asarray(nic.decompress(data))
    assert out.shape == photo.shape

    # A shipped weights file can seed another model (run.init): its float layers are copied.
    cfg = tiny_cfg("model.architecture='factorized'")
    model = build(**cfg["model"])
    init_from(model, tmp_path / "models" / "tiny-test.safetensors")
    trained = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    key = next(k for k in model.state_dict() if k.startswith("g_a.") and k.endswith(".weight"))
    assert torch.equal(model.state_dict()[key], trained[key].half().float())
    # A lambda ladder wholly outside the init's measures another distortion (an MS-SSIM
    # fine-tune of MSE weights): the gain tables are kept level for level, not extrapolated.
    unit = build(**tiny_cfg("model.lmbda_min=50.0", "model.lmbda_max=500.0")["model"])
    init_from(unit, tmp_path / "models" / "tiny-test.safetensors")
    assert torch.equal(unit.gain.log_gain, trained["gain.log_gain"])
    # ... and a shipped model can be trained further: its integer-only decoder comes back too.
    same, fresh = build(**tiny_cfg()["model"]), build(**tiny_cfg()["model"]).state_dict()
    init_from(same, tmp_path / "models" / "tiny-test.safetensors")
    for key in ("g_s.0.weight", "h_s.0.weight"):
        theirs = trained[key]
        assert (same.state_dict()[key] - theirs).abs().max() < 1e-3 * theirs.abs().max()
        assert not torch.allclose(fresh[key], theirs)

    # A run seeded from a shipped file: its card adds up both runs.
    seeded = tiny_cfg("optim.steps=4", f"run.init='{tmp_path / 'models' / 'tiny-test.safetensors'}'")
    train(seeded, tmp_path / "run2", progress=False)
    card2 = export(tmp_path / "run2", "tiny-two", tmp_path / "models", note="run two, seeded")
    assert [r["steps"] for r in card2["history"]] == [10, 4]
    assert card2["total"]["steps"] == 14 and card2["total"]["runs"] == 2
    assert card2["total"]["wall_time_s"] == pytest.approx(sum(r["wall_time_s"] for r in card2["history"]))
    # ... and one seeded from that run's checkpoint (a .pt, not an export) follows it back too.
    train(tiny_cfg("optim.steps=3", f"run.init='{tmp_path / 'run2' / 'checkpoint.pt'}'"), tmp_path / "run3",
          progress=False)
    card3 = export(tmp_path / "run3", "tiny-three", tmp_path / "models")
    assert [r["steps"] for r in card3["history"]] == [10, 4, 3] and card3["total"]["steps"] == 17
    # a card names no folder: the weights a run started from by their hash, a checkpoint relative to the run
    tiny_hash = registry.weights_hash_of(tmp_path / "models" / "tiny-test.safetensors").hex()
    assert card3["history"][1]["init"] == tiny_hash and card3["history"][2]["init"] == "../run2/checkpoint.pt"
    assert card3["history"][2]["data"] == [DATA.name]
    # A run seeded from an export whose card has a history keeps that card's note on its run.
    train(tiny_cfg("optim.steps=2", f"run.init='{tmp_path / 'models' / 'tiny-two.safetensors'}'"), tmp_path / "run5",
          progress=False)
    card5 = export(tmp_path / "run5", "tiny-five", tmp_path / "models")
    assert [r["steps"] for r in card5["history"]] == [10, 4, 2] and card5["total"]["runs"] == 3
    assert card5["history"][1]["note"] == "run two, seeded" and "note" not in card5["history"][2]
    # ... but once the run it started from is gone, the card says what it could not count.
    (tmp_path / "run2").rename(tmp_path / "run2-moved")
    card4 = export(tmp_path / "run3", "tiny-three", tmp_path / "models", force=True)
    assert card4["history"][0] == {"untraced": "../run2/checkpoint.pt"}
    assert card4["total"]["steps"] == 3 and card4["total"]["runs"] == 1
    assert card4["total"]["untraced"] == ["../run2/checkpoint.pt"]
    assert str(tmp_path) not in (tmp_path / "models" / "tiny-three.json").read_text()


@pytest.mark.fast
@pytest.mark.parametrize("config", sorted((Path(__file__).parent.parent / "configs").rglob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_configs_resolve(config):
    cfg = resolve(config)
    assert cfg["model"]["architecture"] in ARCHITECTURES
    assert cfg["data"]["crop"] > 0 and cfg["optim"]["steps"] > 0


def test_conv_ae_trains_on_a_cifar_tarball(tmp_path):
    rng = np.random.default_rng(0)
    # Smooth random images, so there is something for an autoencoder to learn.
    base = rng.integers(0, 256, (64, 3, 4, 4)).astype(np.float32)
    data = np.repeat(np.repeat(base, 8, axis=2), 8, axis=3).reshape(64, 3072).astype(np.uint8)
    tarball = cifar_tarball(tmp_path / "cifar-100-python.tar.gz",
                            pickle.dumps({b"data": data, b"fine_labels": [0] * 64}, protocol=2))
    cfg = resolve(Path(__file__).parent.parent / "configs" / "seed" / "conv-ae-cifar.toml",
                  [f"data.sources=['{tarball}']", "data.crop=32", "data.batch=16", "optim.steps=30",
                   "run.threads=1", "run.log_every=10", "model.width=16", "model.latent=8"])
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["step"] == 30
    losses = [r["loss"] for r in read_log(tmp_path / "run") if "loss" in r]
    assert losses[-1] < losses[0]


@pytest.mark.fast
def test_precision_auto_times_the_candidates_and_falls_back_without_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("nic.train.precision.native_bf16", lambda device: False)
    assert candidates("bf16", "auto", cpu)[0] == [Precision("fp32", False)]
    assert "no native support" in candidates("bf16", "auto", cpu)[1]
    assert candidates("auto", "auto", cpu)[0] == [Precision("fp32", False), Precision("fp32", True)]
    monkeypatch.setattr("nic.train.precision.native_bf16", lambda device: True)
    options, _ = candidates("auto", False, cpu)
    assert options == [Precision("fp32", False), Precision("bf16", False)]
    model = build("hyperprior", N=8, M=8)
    calls = []

    def step(net, p):  # the slow option sleeps: timing must pick the other one
        calls.append(p)
        time.sleep(0.02 if p.dtype == "fp32" else 0.0)

    best, seconds = fastest(options, step, model, repeats=2)
    assert best == Precision("bf16", False) and set(seconds) == {"fp32", "bf16"}
    assert len(calls) == 6  # one warm-up and two timed steps each


@pytest.mark.fast
def test_precision_trial_is_not_fooled_by_a_burst_of_load():
    """A burst of load during one option's steps (another run starting beside this one) must not
    hand the choice to the slower option: options take turns and each keeps its fastest step."""
    options = [Precision("fp32", False), Precision("bf16", True)]
    calls = []

    def step(net, p):  # bf16 is 4x faster, but its first timed step is slowed by a burst of 0.2 s
        calls.append(p)
        burst = 0.2 if p.dtype == "bf16" and calls.count(p) == 2 else 0.0
        time.sleep((0.04 if p.dtype == "fp32" else 0.01) + burst)

    best, seconds = fastest(options, step, build("hyperprior", N=8, M=8), repeats=3)
    assert best == Precision("bf16", True)
    assert seconds["bf16+channels_last"] < 0.04 <= seconds["fp32"]
    assert calls[2:] == options * 3  # warm-ups, then one step of each option per round


def test_training_logs_the_precision_it_chose(tmp_path):
    train(tiny_cfg("optim.steps=2", "run.precision='auto'", "run.channels_last='auto'"), tmp_path / "run",
          progress=False)
    first = read_log(tmp_path / "run")[0]
    assert first["precision"] in first["trial_s_per_step"] or len(first["trial_s_per_step"]) == 0
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["run"]
    assert saved["precision"] in ("fp32", "bf16") and isinstance(saved["channels_last"], bool)


def save_as_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """A hyperprior saved as a run's checkpoint, for `run.init` to start from."""
    torch.save({"model": model.state_dict(), "config": {"model": {"architecture": "hyperprior", **model.config}}}, path)


@pytest.mark.fast
def test_gain_tables_are_resampled_to_a_wider_lambda_range(tmp_path):
    torch.manual_seed(1)
    narrow = build("hyperprior", N=8, M=8, levels=8, lmbda_min=0.0015, lmbda_max=0.12)
    with torch.no_grad():
        narrow.gain.log_gain.normal_()
        narrow.gain.log_inv_gain.normal_()
    save_as_checkpoint(narrow, tmp_path / "narrow.pt")
    ratio = (0.12 / 0.0015) ** (1 / 7)
    wide = build("hyperprior", N=8, M=8, levels=10, lmbda_min=0.0015, lmbda_max=0.0015 * ratio**9)
    init_from(wide, tmp_path / "narrow.pt")
    old, new = narrow.gain.log_gain, wide.gain.log_gain
    assert torch.allclose(new[:8], old, atol=1e-5)  # the shared levels keep their gains
    assert torch.allclose(new[8], 2 * old[7] - old[6], atol=1e-5)  # the new ones extrapolate
    assert torch.allclose(new[9], 3 * old[7] - 2 * old[6], atol=1e-5)
    assert torch.equal(wide.g_a[0].weight, narrow.g_a[0].weight)


@pytest.mark.fast
def test_a_wider_encoder_starts_from_narrower_weights_unchanged(tmp_path):
    torch.manual_seed(2)
    narrow = build("hyperprior", N=8, M=12, levels=4)
    save_as_checkpoint(narrow, tmp_path / "narrow.pt")
    wide = build("hyperprior", N=8, M=12, levels=4, N_a=16)
    assert wide.g_a[0].weight.shape[0] == 16 and wide.g_s[0].weight.shape[1] == 8  # decoder as before
    assert "N_a" not in narrow.config and wide.config["N_a"] == 16
    init_from(wide, tmp_path / "narrow.pt")
    x, t = torch.rand(2, 3, 64, 64), torch.tensor([0.5, 2.5])
    with torch.no_grad():
        torch.manual_seed(3)  # the same training noise in both
        a = narrow(x, t)
        torch.manual_seed(3)
        b = wide(x, t)
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)  # the same function at the start
    assert torch.allclose(a["bits"], b["bits"], rtol=1e-5)
    assert wide.g_a[0].weight[8:].abs().sum() > 0  # new channels keep their fresh init, to grow
    out = wide(x, t)
    (out["bits"].sum() + out["x_hat"].square().sum()).backward()
    assert wide.g_a[2].weight.grad[:, 8:].abs().sum() > 0  # ... and training reaches them

    # The other way, a wider encoder into a narrower model, is refused: it cannot be loaded,
    # and leaving g_a at its fresh init would silently throw the trained encoder away.
    save_as_checkpoint(wide, tmp_path / "wide.pt")
    with pytest.raises(NicError, match=r"g_a\.0\.weight is \(16, 3, 5, 5\), wider .* model\.N_a"):
        init_from(build("hyperprior", N=8, M=12, levels=4), tmp_path / "wide.pt")


@pytest.mark.fast
def test_holdout_keeps_whole_source_photos_out_of_training(tmp_path):
    folder = tmp_path / "pack"
    folder.mkdir()
    rows = ["patch\tsource"]
    for i in range(12):  # 4 photos, 3 patches each
        np.random.seed(i)
        name = f"p{i:02d}.png"
        Image.fromarray(np.random.randint(0, 255, (16, 16, 3), np.uint8)).save(folder / name)
        rows.append(f"{name}\tphoto{i // 3}.jpg")
    (folder / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    held = holdout([folder], 4)
    assert len(held) == 6 and held == holdout([folder], 4)  # two whole photos, deterministically
    photos = {int(p.stem[1:]) // 3 for p in held}
    assert len(photos) == 2
    images, skipped = load_sources([str(folder)], 512, 4)
    assert skipped == held and len(images) == 6


@pytest.mark.fast
def test_dihedral_augment_draws_all_eight_flips_and_turns_of_a_crop():
    from nic.train.data import CropSampler

    img = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)  # every pixel distinct
    whole = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    views = {(k, f): whole.flip(2).rot90(k, (1, 2)) if f else whole.rot90(k, (1, 2))
             for k in range(4) for f in (0, 1)}
    seen = set()
    for aug in ("flip", "dihedral"):
        sampler = CropSampler([img], 8, torch.device("cpu"), augment=aug)
        for step in range(40):
            batch = sampler.batch(2, sampler.generator(step))
            for crop in batch:
                match = [key for key, v in views.items() if torch.equal(v, crop)]
                assert len(match) == 1
                seen.add((aug, match[0]))
    assert {key for aug, key in seen if aug == "flip"} == {(0, 0), (0, 1)}
    assert {key for aug, key in seen if aug == "dihedral"} == set(views)
    with pytest.raises(NicError, match="data.augment"):
        CropSampler([img], 8, torch.device("cpu"), augment="rotate")


@pytest.mark.fast
def test_balance_sets_how_samples_at_different_lambdas_are_weighed():
    from nic.train.loss import rd_loss

    x = torch.rand(2, 3, 8, 8)
    out = {"x_hat": x + 0.01 * torch.randn_like(x), "bits": torch.tensor([10.0, 100.0])}
    lmbda = torch.tensor([0.001, 0.1])
    bpp = out["bits"] / 64
    dist = 255**2 * (out["x_hat"] - x).square().mean((1, 2, 3))
    per_sample = bpp + lmbda * dist
    for balance in (0.0, 0.5, 1.0):
        weight = (lmbda.mean() / lmbda) ** balance
        expected = (weight * per_sample).mean()
        assert torch.allclose(rd_loss(x, out, lmbda, balance=balance)["loss"], expected)


@pytest.mark.fast
def test_a_run_saved_before_a_config_key_existed_resumes_with_its_default():
    old = resolve(None, TINY)
    del old["data"]["augment"], old["optim"]["balance"]
    cfg = resolve(None, ["optim.steps=7"], old)
    assert cfg["data"]["augment"] == "flip" and cfg["optim"]["balance"] == 0.5
    assert cfg["model"]["N"] == 16 and cfg["optim"]["steps"] == 7


def test_snapshots_keep_their_own_cadence(tmp_path):
    """Snapshots every 3 steps with checkpoints every 4: both cadences are kept."""
    train(tiny_cfg("optim.steps=6", "run.checkpoint_every=4", "run.snapshot_every=3"), tmp_path / "run", progress=False)
    snaps = sorted(p.name for p in (tmp_path / "run" / "snapshots").glob("*.pt"))
    assert snaps == ["step-0000003.pt", "step-0000006.pt"]
    assert load_checkpoint(tmp_path / "run")["step"] == 6


def test_optim_only_trains_the_named_modules_and_freezes_the_rest(tmp_path):
    """A context model started on fixed transforms: only `context` and `param_net` move."""
    torch.manual_seed(4)
    save_as_checkpoint(build("hyperprior", N=16, M=24), tmp_path / "start.pt")
    cfg = tiny_cfg("model.architecture='checkerboard'", "optim.steps=8", f"run.init='{tmp_path / 'start.pt'}'",
                   "optim.only=['context', 'param_net']")
    train(cfg, tmp_path / "run", progress=False)
    start = load_checkpoint(tmp_path / "start.pt")["model"]
    end = load_checkpoint(tmp_path / "run")["model"]
    moved = {k.split(".")[0] for k in end if k not in start or not torch.equal(start[k], end[k])}
    assert moved == {"context", "param_net"}
    assert end["param_net.2.weight"].abs().sum() > 0  # the zero-initialised last layer learned
    with pytest.raises(NicError, match="names no module"):
        train(tiny_cfg("optim.only=['nothing']", "optim.steps=1"), tmp_path / "other", progress=False)

