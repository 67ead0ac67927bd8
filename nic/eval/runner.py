"""`nic eval`: measure learned models and classic codecs on a folder of images, in parallel, cached.

Each (image, codec, setting) gives one record. Finished records are appended to `records.jsonl`
in the results folder as they arrive, so an interrupted or repeated run measures only what is
missing: a record is reused while the image file (name, size, mtime), the codec and setting, the
model's weights hash (or the classic encoder's version) and nic's own coding and metric code
(`code_version`) are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from nic import codec
from nic.errors import NicError
from nic.eval import classic, published
from nic.eval.metrics import METRICS
from nic.io import IMAGE_SUFFIXES
from nic.models import registry
from nic.quality import STANDARD_QUALITIES, check_effort, check_quality
from nic.writes import atomic_write

DEFAULT_CODECS = ("jpeg", "webp", "jp2", "avif", "jxl", "heic")
DEFAULT_METRICS = ("psnr", "ssim", "msssim")
RECORDS = "records.jsonl"
RESULTS = "results.json"  # what report.py writes beside them


@dataclass(frozen=True)
class Contender:
    """One curve to measure: a learned model over qualities, or a classic codec over its sweep."""

    name: str
    kind: str  # "learned" or "classic"
    label: str
    params: tuple[int, ...]
    version: str  # weights hash or encoder version: when it changes, cached records are redone
    model: str = ""  # a learned curve's model (its name also carries the effort)
    effort: int = 0  # a learned curve's encoder effort


@dataclass(frozen=True)
class Source:
    """An image file, with what identifies its content for the cache."""

    path: Path
    size: int
    mtime_ns: int


@dataclass
class Plan:
    """Everything `nic eval` was asked to do, checked before any work starts."""

    data: Path
    images: list[Source]
    contenders: list[Contender]
    metrics: tuple[str, ...]
    published: dict[str, published.Curve] = field(default_factory=dict)


@dataclass
class Outcome:
    """The records of a plan (in plan order), how many were reused from the cache, and what failed.

    An image that failed for any codec is left out of `records`, so that every curve averages the
    same images; its records for the other codecs stay in the cache."""

    records: list[dict]
    reused: int
    measured: int
    seconds: float
    failed: list[dict] = field(default_factory=list)  # {"image", "codec", "error"}, one per failed task


def _items(spec: str, what: str) -> list[str]:
    """The comma-separated items of an option, in order, repeats kept (models share qualities)."""
    items = [s.strip() for s in spec.split(",")]
    if not all(items):
        raise NicError(f"--{what} {spec!r}: empty item in the list")
    return items


def _quality(text: str, spec: str) -> int:
    try:
        return check_quality(int(text))
    except ValueError:
        raise NicError(f"--models {spec!r}: quality {text!r} is not an integer") from None


def parse_models(spec: str | None) -> dict[str, tuple[int, ...]]:
    """'hyperprior:1,10,factorized' -> {hyperprior: (1, 10), factorized: the standard qualities}; 'none' -> {}.

    Commas separate both models and qualities: a number continues the previous model's list.
    None is the default model at the standard qualities.
    """
    if spec is None:
        return {registry.DEFAULT_MODEL: STANDARD_QUALITIES}
    if spec == "none":
        return {}
    models: dict[str, list[int]] = {}
    last = None
    for item in _items(spec, "models"):
        name, colon, first = item.partition(":")
        if not colon and item.isdigit():
            if last is None:
                raise NicError(f"--models {spec!r}: quality {item} comes before any model name")
            models[last].append(_quality(item, spec))
            continue
        if name in models:
            raise NicError(f"--models {spec!r}: model {name!r} given twice")
        models[name] = [_quality(first, spec)] if colon else []
        last = name
    return {name: tuple(sorted(set(qs))) or STANDARD_QUALITIES for name, qs in models.items()}


def parse_efforts(spec: str | None) -> tuple[int, ...]:
    """'0,1' -> (0, 1): the encoder efforts each learned model is measured at (None: effort 0)."""
    if spec is None:
        return (0,)
    return tuple(sorted({check_effort(item) for item in _items(spec, "effort")}))


def find_images(data: Path) -> list[Source]:
    """The image files directly in `data`, by name."""
    if not data.is_dir():
        raise NicError(f"{data}: no such folder")
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise NicError(f"{data}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return [Source(p, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def _published(data: Path, images: list[Source], folder: str | None) -> dict[str, published.Curve]:
    """Published Kodak curves: from `folder`, or by default from a `published` folder beside the data."""
    if folder == "none":
        return {}
    path = Path(folder) if folder else data.resolve().parent / "published"
    if not published.looks_like_kodak([s.path for s in images]):
        if folder:
            warnings.warn(f"{data} is not the 24 Kodak images: published Kodak curves are not drawn", stacklevel=2)
        return {}
    return published.load(path) if folder or path.is_dir() else {}


def plan(data: Path, models: str | None = None, codecs: str | None = None, metrics: str | None = None,
         published_dir: str | None = None, efforts: str | None = None) -> Plan:
    """Check every input (folder, images, models, codecs, metrics, efforts) and say what will be
    measured: one curve per learned model and effort, one per classic codec.

    None means the defaults: the default model at effort 0, DEFAULT_CODECS, DEFAULT_METRICS.
    """
    images = find_images(data)
    chosen = list(dict.fromkeys(_items(metrics, "metrics"))) if metrics else list(DEFAULT_METRICS)
    for m in chosen:
        if m not in METRICS:
            raise NicError(f"unknown metric {m!r} (known: {', '.join(METRICS)})")
    contenders = []
    for name, qualities in parse_models(models).items():
        if name in classic.CODECS:
            raise NicError(f"model {name!r} has the name of a classic codec; rename the model")
        lm = codec.resolve_model(name)
        for effort in parse_efforts(efforts):
            codec.effort_for(lm, effort)
            curve, label = (f"{name}-effort{effort}", f"nic {name}, effort {effort}") if effort \
                else (name, f"nic {name}")
            contenders.append(Contender(curve, "learned", label, qualities, lm.weights_hash.hex(), name, effort))
    for name in [] if codecs == "none" else dict.fromkeys(_items(codecs, "codecs")) if codecs else DEFAULT_CODECS:
        c = classic.get(name)
        contenders.append(Contender(name, "classic", c.label, c.params, classic.version(name)))
    if not contenders:
        raise NicError("nothing to evaluate: no models and no codecs")
    return Plan(data, images, contenders, tuple(chosen), _published(data, images, published_dir))


CLASSIC_SOURCES = {"nic/eval/classic.py", "nic/eval/metrics.py", "nic/eval/rd.py", "nic/io.py",
                   "nic_decode/container.py"}  # io reads the pixel limit from there


def code_version(kind: str) -> str:
    """A hash of the source a record depends on: for classic codecs, the Pillow bridge and
    the metrics; for learned models, all of nic but training, the CLI, the Pillow plugin, `nic serve`
    and the reporting side, and all of nic_decode, whose reader and decoding pieces nic runs.

    While the code is in flux, a change to the codec, the models, entropy coding or the metrics
    must redo cached results just as new weights do.
    """
    root = Path(__file__).resolve().parent.parent.parent  # holds the packages nic and nic_decode
    skip = {"nic/eval/runner.py", "nic/eval/report.py", "nic/eval/bdrate.py", "nic/eval/published.py", "nic/cli.py",
            "nic/pillow.py"}
    files = sorted(p for package in ("nic", "nic_decode") for p in (root / package).rglob("*.py")
                   if p.relative_to(root).as_posix() not in skip
                   and p.relative_to(root).parts[1] not in ("train", "serve")
                   and (kind == "learned" or p.relative_to(root).as_posix() in CLASSIC_SOURCES))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def _key(image: str, size: int, mtime_ns: int, codec: str, param: int, version: str, code: str) -> str:
    return json.dumps([image, size, mtime_ns, codec, param, version, code])


def _record_key(r: dict) -> str:
    return _key(r["image"], r["file_size"], r["file_mtime_ns"], r["codec"], r["param"], r["version"], r["code"])


def _load_cache(path: Path) -> dict[str, dict]:
    cache = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
            cache[_record_key(record)] = record
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short when a run was interrupted
    return cache


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NicError(f"{out}: exists and is not a folder")
    # A folder of results without its records (results/kodak as committed, in a fresh clone) is
    # an eval's folder too: its results are measured again and rewritten.
    ours = (out / RECORDS).is_file() or (out / RESULTS).is_file()
    if out.is_dir() and any(out.iterdir()) and not ours and not force:
        raise NicError(f"{out}: folder holds other files, not nic eval results (use --force to write into it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NicError(f"{out}: cannot create folder ({e.strerror})") from None


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the workers share the cores: one thread each wastes none on syncing


def _measure(path: Path, contender: Contender, params: tuple[int, ...], metrics: tuple[str, ...]) -> list[dict]:
    """In a worker: one image with one codec at several settings."""
    from nic.eval.rd import measure, measure_learned
    from nic.io import Picture, read_image

    source = read_image(path)
    picture = Picture(source.pixels)  # alpha dropped: every codec is scored on the same RGB (or grey)
    if contender.kind == "learned":
        rows = measure_learned(picture, registry.load(contender.model), params, metrics, contender.effort)
    else:
        rows = [measure(picture, contender.name, p, metrics) for p in params]
    size = {"width": picture.width, "height": picture.height}
    return [{"param": p, **size, **r} for p, r in zip(params, rows, strict=True)]


def run(plan: Plan, out: Path, jobs: int = 2, force: bool = False) -> Outcome:
    """Measure what the cache in `out` lacks (everything with `force`) with `jobs` worker processes."""
    if jobs < 1:
        raise NicError(f"--jobs must be at least 1, got {jobs}")
    _prepare(out, force)
    start = time.perf_counter()
    log_path = out / RECORDS
    cache = {} if force else _load_cache(log_path)
    code = {kind: code_version(kind) for kind in ("learned", "classic")}
    keys: list[str] = []
    todo: dict[tuple[Source, Contender], list[int]] = {}
    for contender in plan.contenders:  # learned models first: the slowest tasks start first
        for src in plan.images:
            for p in contender.params:
                keys.append(_key(src.path.name, src.size, src.mtime_ns, contender.name, p, contender.version,
                                 code[contender.kind]))
                if not all(m in cache.get(keys[-1], {}) for m in plan.metrics):
                    todo.setdefault((src, contender), []).append(p)
    measured = sum(map(len, todo.values()))
    failed: list[dict] = []
    lost = 0  # points of failed tasks
    with open(log_path, "w" if force else "a") as log, \
            tqdm(total=measured, unit="point", desc="nic eval", disable=None) as bar:
        pool = ProcessPoolExecutor(jobs, multiprocessing.get_context("spawn"), _init_worker)
        try:
            futures = {pool.submit(_measure, src.path, contender, tuple(params), plan.metrics):
                       (src, contender) for (src, contender), params in todo.items()}
            for future in as_completed(futures):
                src, contender = futures[future]
                try:
                    rows = future.result()
                except BrokenProcessPool:
                    raise
                except Exception as e:  # this image and codec only: a thin image, a damaged file
                    failed.append({"image": src.path.name, "codec": contender.name, "error": _reason(e)})
                    lost += len(todo[src, contender])
                    bar.update(len(todo[src, contender]))
                    continue
                for r in rows:
                    record = {"image": src.path.name, "codec": contender.name, "kind": contender.kind, **r,
                              "file_size": src.size, "file_mtime_ns": src.mtime_ns, "version": contender.version,
                              "code": code[contender.kind]}
                    cache[_record_key(record)] = record
                    log.write(json.dumps(record) + "\n")
                log.flush()
                bar.update(len(todo[src, contender]))
        finally:
            pool.shutdown(cancel_futures=True)
    atomic_write(log_path, "".join(json.dumps(r) + "\n" for r in cache.values()).encode(), force=True)
    bad = {f["image"] for f in failed}
    records = [cache[k] for k in keys if k in cache and cache[k]["image"] not in bad]
    failed.sort(key=lambda f: (f["image"], f["codec"]))
    return Outcome(records, len(keys) - measured, measured - lost, time.perf_counter() - start, failed)


def _reason(e: Exception) -> str:
    """One line for a failed task: nic's own message as is, anything else with its type."""
    text = str(e) if isinstance(e, NicError) else f"{type(e).__name__}: {e}"
    return text.splitlines()[0] if text else type(e).__name__
