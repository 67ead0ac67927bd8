"""Image <-> .nic bytes: padding, quality or target-size control, alpha, grey, the header.

Compression and decompression share one model object and one container; the decoder needs
nothing but the file and the weights that its header names and hashes.
"""

from __future__ import annotations

import functools
import io
import time
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image

from nic import container, fine, geometry, metadata
from nic.container import ALPHA_SECTION, EXIF_SECTION, FINE_SECTION, ICC_SECTION, LATENT_SECTION, XMP_SECTION, Header
from nic.errors import FormatError, NicError
from nic.geometry import Layout
from nic.io import Picture, check_size, max_pixels
from nic.models import registry
from nic.models.base import Analysis
from nic.models.registry import LoadedModel
from nic.quality import DEFAULT_QUALITY, QUALITIES, check_effort, check_quality
from nic.sizing import largest_near, largest_within


def _encode_alpha(alpha: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(alpha, "L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _decode_alpha(data: bytes, height: int, width: int) -> np.ndarray:
    if not data.endswith(_PNG_END):  # a PNG cut short, or with bytes after its end
        raise FormatError("alpha section is truncated or has data after its end")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG" or img.mode != "L" or img.size != (width, height):
                raise FormatError("alpha section does not match the image")
            return np.asarray(img).copy()
    except FormatError:
        raise
    except Exception as e:
        raise FormatError(f"alpha section is corrupt ({e})") from None


_META_FIELDS = {EXIF_SECTION: ("exif", "EXIF"), XMP_SECTION: ("xmp", "XMP"), ICC_SECTION: ("icc", "ICC profile")}


def _metadata_sections(meta: metadata.Metadata) -> list[tuple[int, bytes]]:
    """A file without metadata gets no section, and so stays byte-identical to older nic's."""
    return [(kind, metadata.pack(getattr(meta, name))) for kind, (name, _) in _META_FIELDS.items()
            if getattr(meta, name)]


def read_metadata(sections: list[tuple[int, bytes]], grey: bool) -> metadata.Metadata:
    """The metadata sections of a parsed file; a damaged one (or a profile that cannot describe
    the `grey` or colour pixels) is skipped with a warning, since metadata never decides a pixel."""
    found = {}
    for kind, data in sections:
        if kind in _META_FIELDS:
            name, what = _META_FIELDS[kind]
            try:
                found[name] = metadata.unpack(data, what)
            except FormatError as e:
                warnings.warn(f"{e}: skipped (the pixels are not affected)", stacklevel=2)
    if "icc" in found and not metadata.describes(found["icc"], grey):
        warnings.warn(f"ICC profile section is not a {'grey' if grey else 'RGB'} profile: skipped "
                      "(the pixels are not affected)", stacklevel=2)
        del found["icc"]
    return metadata.Metadata(**found)


def resolve_model(model: str | LoadedModel | None) -> LoadedModel:
    """The model to encode with; a name no header can hold and an archived release's decode-only
    weights are refused before any work."""
    lm = model if isinstance(model, LoadedModel) else registry.load(model or registry.DEFAULT_MODEL)
    if not container.is_model_name(lm.name):  # said now, not after the whole image is coded
        raise NicError(f"model name {lm.name!r} cannot be written into a .nic file: a model name is 1 to 255 "
                       "letters, digits, '-' and '_'; rename its weights file and model card")
    if lm.decode_only:
        raise NicError(f"model {lm.name!r} with weights {lm.weights_hash.hex()} is an archived release, kept only "
                       "to decode the files made with it: it cannot encode")
    return lm


def _analyse(lm: LoadedModel, picture: Picture) -> tuple[Layout, Analysis]:
    """The quality-independent half of encoding, done once per picture: the layout (padding,
    folding), checked against the pixel limit as the decoder will check it, and the analysis."""
    check_size(picture.width, picture.height, "image")
    layout = geometry.plan(picture.width, picture.height, lm.model.downsampling)
    geometry.check_work(layout, max_pixels(), lm.model.decode_cost)
    return layout, lm.model.analyse(geometry.arrange(picture.rgb, layout))


def effort_for(lm: LoadedModel, effort: int) -> int:
    """The effort level, checked against what this model's encoder can refine."""
    effort = check_effort(effort)
    if effort > lm.model.max_effort:
        raise NicError(f"model {lm.name!r} has no encoder refinement above effort {lm.model.max_effort}")
    return effort


def _base(lm: LoadedModel, quality: int) -> tuple[fine.Plan | None, int]:
    """A quality's fine layer (None below the model's `fine_from`) and the quality its latent is
    coded at: the key under which `_pack` shares base layers between qualities."""
    plan = fine.plan(quality, lm.model.fine_from)
    return plan, plan.base if plan else quality


def _pack(lm: LoadedModel, picture: Picture, quality: int, analysed: tuple[Layout, Analysis], effort: int = 0,
          progress: bool = False, bases: dict | None = None) -> bytes:
    """The file for one quality. Qualities with a fine layer share their base quality's
    streams and decoded image: `bases` keeps them between calls on one analysis."""
    layout, analysis = analysed
    plan, coded_at = _base(lm, quality)
    base = ({} if bases is None else bases).setdefault((coded_at, effort), {"seconds": 0.0})
    start = time.perf_counter()
    if "streams" not in base:
        base["streams"] = lm.model.code(analysis, coded_at, effort, progress)
    if plan and "image" not in base:  # the base quality may have been coded as a file of its own first
        # The decoder's own fast synthesis, so the layer corrects what users will see.
        base["image"] = lm.model.decompress(base["streams"], *layout.padded, coded_at)
    base["seconds"] += time.perf_counter() - start
    sections = [(LATENT_SECTION, s) for s in base["streams"]]
    if plan:
        sections += [(FINE_SECTION, s) for s in fine.encode(analysis.image, base["image"], plan)]
    if picture.alpha is not None:
        sections.append((ALPHA_SECTION, _encode_alpha(picture.alpha)))
    meta = _metadata_sections(picture.metadata)
    version = container.METADATA_VERSION if meta else container.FINE_VERSION if plan else container.VERSION
    header = Header(lm.name, lm.weights_hash, quality, picture.width, picture.height,
                    picture.channels, picture.pixels.shape[2] == 1, picture.bit_depth, picture.orientation,
                    layout.fold, version=version)
    data = container.pack(header, sections + meta)
    container.unpack(data)  # cheap, and it proves the reader accepts what was written
    return data


def encode(picture: Picture, quality: int = DEFAULT_QUALITY, model: str | LoadedModel | None = None,
           effort: int = 0, progress: bool = False) -> bytes:
    """Compress a Picture at one quality (1-100) into .nic bytes, spending `effort` (0-4) on
    the encoder (see `runtime/refine.py`); `progress` shows a bar on stderr while it does."""
    quality = check_quality(quality)
    lm = resolve_model(model)
    effort = effort_for(lm, effort)
    return _pack(lm, picture, quality, _analyse(lm, picture), effort, progress)


def sweep(picture: Picture, model: str | LoadedModel | None = None,
          effort: int = 0) -> Callable[[int], tuple[bytes, float]]:
    """An encoder of one picture at many qualities, as `nic eval` measures a curve: the analysis
    and each base layer are computed once. It returns the bytes `encode` would and the seconds
    a lone `encode` would take (the shared work counted in), so timings stay per file."""
    lm = resolve_model(model)
    effort = effort_for(lm, effort)
    start = time.perf_counter()
    analysis = _analyse(lm, picture)
    analysed_s = time.perf_counter() - start
    bases: dict = {}

    def at(quality: int) -> tuple[bytes, float]:
        quality = check_quality(quality)
        shared = bases.get((_base(lm, quality)[1], effort), {}).get("seconds", 0.0)  # done before
        start = time.perf_counter()
        data = _pack(lm, picture, quality, analysis, effort, bases=bases)
        return data, analysed_s + shared + time.perf_counter() - start

    return at


def encode_to_size(picture: Picture, bpp: float, model: str | LoadedModel | None = None,
                   effort: int = 0, progress: bool = False) -> bytes:
    """The highest quality whose file is at most `bpp` bits per pixel.

    Rate grows with quality, so bisection needs at most 8 codings of one analysis. If even
    quality 1 is larger than asked, that smallest file is returned (the caller says so).
    Above effort 0, where each coding is slow, effort 0's answer is refined, and the ratio of
    the two files' sizes predicts the quality to refine next; from there one quality up or
    down at a time (`sizing.largest_near`).
    """
    if isinstance(bpp, bool) or not isinstance(bpp, (int, float, np.integer, np.floating)) or not bpp > 0:
        raise NicError(f"target bpp must be positive, got {bpp}")
    lm = resolve_model(model)
    effort = effort_for(lm, effort)
    analysis = _analyse(lm, picture)
    budget = bpp * picture.width * picture.height / 8
    bases: dict = {}
    fast = functools.cache(lambda q: _pack(lm, picture, q, analysis, bases=bases))
    quality, data = largest_within(fast, QUALITIES, budget)
    if not effort:
        return data
    refined = functools.cache(lambda q: _pack(lm, picture, q, analysis, effort, progress, bases))
    guess, _ = largest_within(fast, QUALITIES, budget * len(data) / len(refined(quality)))
    return largest_near(refined, QUALITIES, budget, QUALITIES.index(guess))[1]


def decode(data: bytes, model: LoadedModel | None = None, exact: bool = False) -> Picture:
    """Decompress .nic bytes into a Picture, refusing files made with other weights.

    The model is the one the header names, with exactly the weights it hashes (current or
    archived), unless one is given (e.g. during training). `exact` runs the integer synthesis
    (pixels bit-identical on every machine) instead of the fast float one (within a measured
    tolerance of it); the latent is exact either way.
    """
    header, sections = container.unpack(data, max_pixels())
    lm = model if model is not None else registry.load(header.model, header.weights_hash)
    if lm.name != header.model:
        raise FormatError(f"file was made with model {header.model!r}, not {lm.name!r}")
    if lm.weights_hash != header.weights_hash:
        raise FormatError(f"file was made with other weights for model {header.model!r} "
                          f"({header.weights_hash.hex()}, installed {lm.weights_hash.hex()})")
    latents = [s for kind, s in sections if kind == LATENT_SECTION]
    alphas = [s for kind, s in sections if kind == ALPHA_SECTION]
    fines = [s for kind, s in sections if kind == FINE_SECTION]
    has_alpha = header.channels in (2, 4)
    layout = geometry.from_header(header.width, header.height, header.fold, lm.model.downsampling)
    geometry.check_work(layout, max_pixels(), lm.model.decode_cost)
    layer = fine.parse(fines, *layout.padded) if fines else None
    coded_at = layer.base if layer else header.quality
    padded = lm.model.decompress(latents, *layout.padded, coded_at, exact=exact,
                                 terminated=header.version >= container.TERMINATED_FROM)
    rgb = geometry.restore(fine.apply(layer, padded) if layer else padded, layout)
    if header.grey:
        rgb = np.rint(rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    alpha = _decode_alpha(alphas[0], header.height, header.width) if has_alpha else None
    return Picture(rgb, alpha, header.bit_depth, header.orientation, read_metadata(sections, header.grey))
