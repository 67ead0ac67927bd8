"""The `nic` command: parses arguments and calls the modules; every failure is one line."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import warnings
from pathlib import Path

from nic.errors import NicError
from nic.quality import DEFAULT_QUALITY, EFFORTS, QUALITY_MAX, QUALITY_MIN, STANDARD_QUALITIES

# What the extras in pyproject.toml bring: `pip install nic` gives every other command.
EXTRAS = {"serve": ("starlette", "uvicorn"), "eval": ("matplotlib", "pillow_heif", "pillow_jxl"), "onnx": ("onnx",)}


def _needs(command: str, extra: str) -> None:
    """One line naming the extra to install when a module it brings is missing, checked before the
    command starts: some of them are imported only once they are used (uvicorn, the image plugins)."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise NicError(f"nic {command} needs the {extra} extra ({', '.join(missing)} missing): "
                       f"pip install 'nic[{extra}]'")


def _batch(kind: str, args: argparse.Namespace, options: dict) -> None:
    from nic import batch

    if not args.output:
        raise NicError(f"{kind}ing a folder needs -o OUTDIR")
    summary = batch.code_folder(kind, Path(args.input), Path(args.output), options, args.jobs, progress=True)
    print(f"{summary.done} {kind}ed, {summary.skipped} skipped (already done), {len(summary.failed)} failed")
    if summary.failed:
        raise NicError(f"{len(summary.failed)} file(s) failed: " + "; ".join(e for _, e in summary.failed[:3]))


def _compress(args: argparse.Namespace) -> None:
    from nic.files import compress_file
    from nic.quality import check_effort

    effort = check_effort(args.effort)
    src = Path(args.input)
    if src.is_dir():
        return _batch("compress", args, dict(quality=args.quality, bpp=args.bpp, model=args.model, force=args.force,
                                             effort=effort, strip=args.strip, strip_gps=args.strip_gps))
    out = Path(args.output) if args.output else src.with_suffix(".nic")
    done = compress_file(src, out, args.quality, args.bpp, args.model, args.force, effort, sys.stderr.isatty(),
                         args.strip, args.strip_gps)
    if args.bpp is not None and done.bpp > args.bpp:
        print(f"nic: warning: {done.bpp:.3f} bpp at the lowest quality is above the {args.bpp} bpp asked for",
              file=sys.stderr)
    print(f"{out}: {done.size} bytes, {done.bpp:.4f} bpp, {done.width}x{done.height}")


def _decompress(args: argparse.Namespace) -> None:
    from nic.files import decompress_file

    src = Path(args.input)
    if src.is_dir():
        return _batch("decompress", args, dict(force=args.force, exact=args.exact))
    out = Path(args.output) if args.output else src.with_suffix(".png")
    picture = decompress_file(src, out, args.force, exact=args.exact)
    print(f"{out}: {picture.width}x{picture.height}")


def _info(args: argparse.Namespace) -> None:
    from nic import container, fine
    from nic.io import max_pixels

    data = container.read(args.input, max_pixels())
    h, sections = container.unpack(data, max_pixels())
    pixels = h.width * h.height
    kinds = {container.LATENT_SECTION: "latent", container.ALPHA_SECTION: "alpha", container.FINE_SECTION: "fine",
             container.EXIF_SECTION: "EXIF", container.XMP_SECTION: "XMP", container.ICC_SECTION: "ICC profile"}
    print(f"file:        {args.input} ({len(data)} bytes, {len(data) * 8 / pixels:.4f} bpp)")
    print(f"format:      .nic version {h.version}")
    print(f"model:       {h.model} (weights {h.weights_hash.hex()})")
    fines = [s for kind, s in sections if kind == container.FINE_SECTION]
    layer = f" (latent at {fine.base_quality(fines)}, plus a fine layer)" if fines else ""
    print(f"quality:     {h.quality}{layer}")
    print(f"image:       {h.width}x{h.height}, {h.channels} channel(s){' grey' if h.grey else ''}, "
          f"source {h.bit_depth}-bit, EXIF orientation {h.orientation} applied")
    print(f"folded:      {f'in strips of {h.fold} px' if h.fold else 'no'}")
    print("sections:    " + ", ".join(f"{kinds.get(k, k)} {n} B" for k, n in h.sections))


def _models(args: argparse.Namespace) -> None:
    from nic.models import registry

    cards = registry.available()
    if not cards:
        print("no models found")
    for name, card in cards.items():
        default = " (default)" if name == registry.DEFAULT_MODEL else ""
        tr = card.get("training", {})
        print(f"{name}{default}: {card.get('architecture', '?')} {card.get('config', {})}")
        hours = tr.get("wall_time_s", 0) / 3600
        print(f"  trained {tr.get('steps', '?')} steps, {hours:.2f} h on {tr.get('hardware', '?')}")
        if card.get("rd"):
            pts = ", ".join(f"q{p['quality']} {p['bpp']:.3f} bpp {p['psnr']:.2f} dB" for p in card["rd"]["points"])
            print(f"  {card['rd']['data']} ({card['rd']['images']} images): {pts}")
        print(f"  {card['path']}")


def _train(args: argparse.Namespace) -> None:
    from nic.train.checkpoint import CHECKPOINT, load_checkpoint
    from nic.train.config import resolve
    from nic.train.loop import train

    overrides = list(args.set or [])
    for flag, key in (("steps", "optim.steps"), ("hours", "optim.hours"), ("batch", "data.batch"), ("lr", "optim.lr"),
                      ("device", "run.device"), ("model", "model.architecture")):
        value = vars(args)[flag]
        if value is not None:
            overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    if args.data:
        overrides.append("data.sources=[" + ", ".join(repr(d) for d in args.data) + "]")
    # A resumed run keeps its own config; flags given with --resume change it (e.g. more steps).
    base = load_checkpoint(Path(args.run) / CHECKPOINT)["config"] if args.resume else None
    cfg = resolve(args.config, overrides, base)
    result = train(cfg, Path(args.run), resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{args.run}: {result['step']} steps, {result['elapsed'] / 60:.1f} min, "
              f"{result['skipped']} non-finite steps skipped")


def _export(args: argparse.Namespace) -> None:
    from nic.models.registry import user_model_dir
    from nic.train.export import export

    kodak = Path(args.kodak) if args.kodak else None
    card = export(Path(args.run), args.name, Path(args.out) if args.out else user_model_dir(), kodak, args.force,
                  note=args.note)
    print(f"exported {args.name}: {card['size_bytes']} bytes, sha256 {card['sha256'][:16]}")
    if card.get("archived"):
        print(f"  the weights it replaced are kept in {card['archived']} (files made with them still decode)")
    for p in card.get("rd", {}).get("points", []):
        print(f"  q{p['quality']}: {p['bpp']:.4f} bpp, {p['psnr']:.2f} dB")


def _export_onnx(args: argparse.Namespace) -> None:
    _needs("export-onnx", "onnx")
    from nic.onnx_export import CODING_FILE, export_onnx

    manifest = export_onnx(args.model, Path(args.dir), args.force)
    print(f"{args.dir}: model {manifest['model']} (weights {manifest['weights_hash']}): "
          f"{', '.join(g['file'] for g in manifest['graphs'].values())}, {CODING_FILE}, manifest.json")


def _eval(args: argparse.Namespace) -> None:
    _needs("eval", "eval")
    from nic.eval import report, runner

    plan = runner.plan(Path(args.data), args.models, args.codecs, args.metrics, args.published, args.effort)
    out = Path(args.out)
    outcome = runner.run(plan, out, args.jobs, args.force)
    report.write(out, plan, outcome)
    print(f"{out}: {len(plan.images)} images, {len(outcome.records)} results ({outcome.reused} reused, "
          f"{outcome.measured} measured) in {outcome.seconds:.0f} s; see {out / 'report.html'}")
    if outcome.failed:
        first = {f["image"]: f"{f['image']} ({f['codec']}: {f['error']})" for f in reversed(outcome.failed)}
        raise NicError(f"{len(first)} image(s) failed and are left out of the report (see it for each codec): "
                       + "; ".join(sorted(first.values())[:3]))


def _serve(args: argparse.Namespace) -> None:
    _needs("serve", "serve")
    from nic.serve.app import serve

    serve(args.port, args.workers, args.queue)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nic", description="nic: a learned image codec")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress an image (or a folder of them) into .nic")
    c.add_argument("input", help="an image, or a folder (then -o names the output folder)")
    c.add_argument("-o", "--output")
    rate = c.add_mutually_exclusive_group()
    rate.add_argument("-q", "--quality", type=int, default=DEFAULT_QUALITY,
                      help=f"{QUALITY_MIN}-{QUALITY_MAX}, higher is better ({DEFAULT_QUALITY})")
    rate.add_argument("--bpp", type=float, help="largest file at most this many bits per pixel")
    c.add_argument("--model", help="model name (see `nic models`)")
    c.add_argument("--effort", default="0", help=f"encoder effort {EFFORTS[0]}-{EFFORTS[-1]}: higher makes smaller "
                                                 "files for the same quality, slower to write, as fast to read (0)")
    c.add_argument("--force", action="store_true", help="overwrite an existing output")
    strip = c.add_mutually_exclusive_group()
    strip.add_argument("--strip", action="store_true", help="keep no metadata (EXIF, XMP; the colour profile too, "
                       "so the pixels are converted to sRGB)")
    strip.add_argument("--strip-gps", action="store_true", help="keep the metadata but the location (GPS)")
    c.add_argument("--jobs", type=int, default=0, help="worker processes for a folder (default: all cores)")
    c.set_defaults(handler=_compress)

    d = sub.add_parser("decompress", help="decompress a .nic file (or a folder of them) into PNG")
    d.add_argument("input", help="a .nic file, or a folder (then -o names the output folder)")
    d.add_argument("-o", "--output")
    d.add_argument("--force", action="store_true", help="overwrite an existing output")
    d.add_argument("--exact", action="store_true",
                   help="pixels bit-identical on every machine (integer synthesis, slower)")
    d.add_argument("--jobs", type=int, default=0, help="worker processes for a folder (default: all cores)")
    d.set_defaults(handler=_decompress)

    i = sub.add_parser("info", help="show the header of a .nic file")
    i.add_argument("input")
    i.set_defaults(handler=_info)

    m = sub.add_parser("models", help="list models and their Kodak RD points")
    m.set_defaults(handler=_models)

    t = sub.add_parser("train", help="train a model (see configs/)")
    t.add_argument("--config", help="TOML config file")
    t.add_argument("run", help="run folder (config, log, checkpoints)")
    t.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    t.add_argument("--data", nargs="+", help="image folders and/or CIFAR-100 .tar.gz (or data.sources in --config)")
    t.add_argument("--model", help="architecture to train (default: the default model's, see `nic models`)")
    t.add_argument("--steps", type=int)
    t.add_argument("--hours", type=float, help="fit the step count to this wall time (at the end of warm-up)")
    t.add_argument("--batch", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--device", help="auto, cpu, cuda")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=_train)

    e = sub.add_parser("export", help="export a training run as a model")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument("--name", required=True)
    e.add_argument("--out", help="folder (default: $NIC_MODEL_DIR or ~/.local/share/nic/models)")
    e.add_argument("--kodak", help="folder of PNGs to measure the model card's RD points on")
    e.add_argument("--note", default="", help="free text for the model card (how it was trained, caveats)")
    e.add_argument("--force", action="store_true")
    e.set_defaults(handler=_export)

    o = sub.add_parser("export-onnx", help="export a model's networks as ONNX graphs with its integer coding state, "
                                           "for decoders without PyTorch (see docs/ONNX.md)")
    o.add_argument("model", help="model name (see `nic models`)")
    o.add_argument("dir", help="output folder (made if missing)")
    o.add_argument("--force", action="store_true", help="overwrite files already there")
    o.set_defaults(handler=_export_onnx)

    v = sub.add_parser("eval", help="measure models and classic codecs on a folder of images (RD, BD-rate, report)")
    v.add_argument("data", help="folder of images, e.g. the 24 Kodak PNGs")
    v.add_argument("--out", required=True, help="results folder; a rerun into it reuses finished results")
    v.add_argument("--models",
                   help="comma list of MODEL or MODEL:Q1,Q2,... (default: the default model at qualities "
                        f"{','.join(map(str, STANDARD_QUALITIES))}); 'none' for no learned model")
    v.add_argument("--codecs", help="comma list of classic codecs: jpeg, jpeg444, webp, jp2, avif, jxl, heic "
                                    "(default: all but jpeg444), or 'none'")
    v.add_argument("--metrics", help="comma list of psnr, ssim, msssim (default: all three)")
    v.add_argument("--effort", help="comma list of encoder efforts to measure each learned model at, one curve "
                                    "each, e.g. 0,1 (default: 0)")
    v.add_argument("--jobs", type=int, default=2, help="worker processes (2)")
    v.add_argument("--published", help="folder of published Kodak results for reference curves "
                                      "(default: 'published' beside DATA, if there); 'none' for none")
    v.add_argument("--force", action="store_true", help="measure everything again, ignoring cached results")
    v.set_defaults(handler=_eval)

    s = sub.add_parser("serve", help="a web page comparing nic with JPEG, WebP and AVIF at the same size")
    s.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000; 0 picks a free one)")
    s.add_argument("--workers", type=int, default=1, help="comparisons coded at once (1)")
    s.add_argument("--queue", type=int, default=4, help="comparisons that may wait for a worker (4)")
    s.set_defaults(handler=_serve)
    return p


def _warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"nic: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.showwarning = _warning
    try:
        args.handler(args)
    except NicError as e:
        print(f"nic: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nic: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("nic: error: out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not bad input: still one line, the traceback on request
        if os.environ.get("NIC_DEBUG"):
            raise
        print(f"nic: internal error: {type(e).__name__}: {e} (set NIC_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
