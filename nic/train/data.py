"""Training images held in memory as uint8, and reproducible random crops and flips.

Every batch is a pure function of (seed, step, rank): resuming at step s draws exactly the
batches an uninterrupted run would have drawn, with no sampler state to save.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nic.errors import NicError
from nic.io import IMAGE_SUFFIXES, read_image


def _downscale(a: np.ndarray, max_side: int) -> np.ndarray:
    """Area-downscale so the short side is at most `max_side` (hides noise, bounds memory)."""
    h, w = a.shape[:2]
    if min(h, w) <= max_side:
        return a
    s = max_side / min(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BOX))


def _folder_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_folder(folder: Path, max_side: int, skip: frozenset[Path] = frozenset()) -> list[np.ndarray]:
    """Every image under `folder` (recursively) but those in `skip`, as (H, W, 3) uint8."""
    images = []
    for p in _folder_paths(folder):
        if p in skip:
            continue
        try:
            images.append(_downscale(read_image(p).rgb, max_side))
        except NicError as e:
            print(f"nic train: skipping {e}")
    return images


def holdout(folders: list[Path], count: int) -> list[Path]:
    """About `count` images set aside for validation, picked by a hash of their names.

    Where a folder has a MANIFEST.tsv (patch -> source photo, as the patch pack does), whole
    source photos are held out, so no photo has crops on both sides.
    """
    if count <= 0:
        return []
    groups: dict[str, list[Path]] = {}
    for folder in folders:
        manifest = folder / "MANIFEST.tsv"
        source = {}
        if manifest.is_file():
            rows = (line.split("\t") for line in manifest.read_text().splitlines()[1:])
            source = {str(folder / r[0]): r[1] for r in rows if len(r) == 2}
        for p in _folder_paths(folder):
            groups.setdefault(source.get(str(p), str(p)), []).append(p)
    picked: list[Path] = []
    for key in sorted(groups, key=lambda k: hashlib.sha1(k.encode()).hexdigest()):
        if len(picked) >= count:
            break
        picked += groups[key]
    return sorted(picked)


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what the CIFAR pickles hold: dicts, lists, bytes, numbers and numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles spell bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise NicError(f"CIFAR tarball: refusing to load {module}.{name} from a pickle")
        return self.ALLOWED[(module, name)]


def load_cifar(tarball: Path, split: str = "train") -> list[np.ndarray]:
    """Images of the CIFAR-100 python tarball (cifar-100-python/{train,test}) as (32, 32, 3)."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = next((m for m in tar.getmembers()
                           if m.isfile() and Path(m.name).name == split), None)
            if member is None:
                raise NicError(f"{tarball}: no '{split}' file in the CIFAR tarball")
            raw = tar.extractfile(member).read()
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (tarfile.TarError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise NicError(f"{tarball}: not a readable CIFAR-100 tarball ({e})") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise NicError(f"{tarball}: '{split}' holds no (N, 3072) uint8 'data' array")
    return list(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def to_grey(a: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image as its luma (ITU-R 601, as Pillow's "L"), replicated to 3 channels."""
    return np.repeat(np.asarray(Image.fromarray(a).convert("L"))[:, :, None], 3, axis=2)


def load_sources(sources: list[str], max_side: int = 512, held_out: int = 0,
                 grey: bool = False) -> tuple[list[np.ndarray], list[Path]]:
    """Images from folders and CIFAR-100 tarballs, in the order given, without the ~`held_out`
    folder images set aside for validation (see `holdout`); returns (images, held-out paths).
    `grey`: every image as its luma, replicated to 3 channels (`to_grey`)."""
    paths = [Path(src).expanduser() for src in sources]
    skip = holdout([p for p in paths if p.is_dir()], held_out)
    images: list[np.ndarray] = []
    for src, path in zip(sources, paths, strict=True):
        if path.is_dir():
            images += load_folder(path, max_side, frozenset(skip))
        elif path.name.endswith((".tar.gz", ".tgz")):
            images += load_cifar(path)
        else:
            raise NicError(f"{src}: not a folder of images or a CIFAR-100 .tar.gz")
    if not images:
        raise NicError(f"no training images found in {', '.join(sources)}")
    return ([to_grey(a) for a in images] if grey else images), skip


AUGMENTS = ("flip", "dihedral")


class CropSampler:
    """Random crops, drawn reproducibly from in-memory uint8 images, with horizontal flips
    ("flip") or any of the 8 flips and quarter turns of a square ("dihedral").

    When all images share one size they are stacked into one tensor, which can live on the GPU
    so that cropping and flipping never leave it.
    """

    def __init__(self, images: list[np.ndarray], crop: int, device: torch.device, seed: int = 0,
                 augment: str = "flip"):
        if augment not in AUGMENTS:
            raise NicError(f"data.augment must be one of {', '.join(AUGMENTS)}, not {augment!r}")
        self.crop, self.device, self.seed, self.augment = crop, device, seed, augment
        # Images smaller than the crop are padded by edge replication (e.g. CIFAR's 32x32).
        padded = [self._pad(a) for a in images]
        if len({a.shape for a in padded}) == 1:
            self.stack = torch.from_numpy(np.stack(padded)).permute(0, 3, 1, 2).contiguous().to(device)
            self.images = None
        else:
            self.stack = None
            self.images = [torch.from_numpy(np.array(a)).permute(2, 0, 1).contiguous() for a in padded]
        self.count = len(padded)

    def _pad(self, a: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        if h >= self.crop and w >= self.crop:
            return a
        return np.pad(a, ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)), (0, 0)), mode="edge")

    def generator(self, step: int, rank: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step * 1009 + rank)

    def batch(self, size: int, gen: torch.Generator) -> torch.Tensor:
        """A float batch (size, 3, crop, crop) in [0, 1] on the sampler's device."""
        c = self.crop
        idx = torch.randint(self.count, (size,), generator=gen).tolist()
        u = torch.rand(size, 3, generator=gen).tolist()
        crops = []
        for i, (uy, ux, uf) in zip(idx, u, strict=True):
            img = self.stack[i] if self.stack is not None else self.images[i]
            h, w = img.shape[1:]
            oy, ox = int(uy * (h - c + 1)), int(ux * (w - c + 1))
            patch = img[:, oy:oy + c, ox:ox + c]
            crops.append(patch.flip(2) if uf < 0.5 else patch)
        if self.augment == "dihedral":  # a quarter turn of each crop, drawn after the crops
            turns = torch.randint(4, (size,), generator=gen).tolist()
            crops = [p.rot90(k, (1, 2)) for p, k in zip(crops, turns, strict=True)]
        return torch.stack(crops).to(self.device, non_blocking=True).float().div_(255)
