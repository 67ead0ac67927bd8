"""The results folder of `nic eval`: JSON, CSV, RD plots, BD-rate tables and one self-contained HTML page.

Averages are means of per-image values, as papers report them; MS-SSIM is averaged as is and
then shown in dB, -10 log10(1 - MS-SSIM), where differences near 1 become visible.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import platform
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nic
from nic.eval.bdrate import bd_quality, bd_rate
from nic.eval.crops import CROP, crops
from nic.eval.runner import RESULTS, Outcome, Plan
from nic.writes import atomic_write

QUALITIES = {"psnr": "PSNR (dB, RGB)", "msssim_db": "MS-SSIM (dB) = −10·log10(1 − MS-SSIM), RGB"}
BD_HEADS = {"psnr": ("BD-rate (PSNR)", "BD-PSNR"), "msssim_db": ("BD-rate (MS-SSIM)", "BD-MS-SSIM")}
CSV_FIELDS = ("image", "codec", "kind", "param", "width", "height", "bytes", "bpp", "ratio",
              "psnr", "ssim", "msssim", "msssim_db", "enc_s", "dec_s")


def _db(msssim: float) -> float:
    return math.inf if msssim == 1 else -10 * math.log10(1 - msssim)


def averages(plan: Plan, records: list[dict]) -> list[dict]:
    """Per (codec, setting): the mean over images of every per-image number."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["codec"], r["param"]), []).append(r)
    rows = []
    for (name, param), rs in groups.items():
        row = {"codec": name, "kind": rs[0]["kind"], "param": param, "images": len(rs)}
        for f in ("bytes", "bpp", "ratio", *plan.metrics, "enc_s", "dec_s"):
            row[f] = float(np.mean([r[f] for r in rs]))
        if "msssim" in row:
            row["msssim_db"] = _db(row["msssim"])
        rows.append(row)
    return rows


def curves(plan: Plan, rows: list[dict]) -> dict[str, dict]:
    """Every RD curve, measured and published: (bpp, quality) per quality measure in QUALITIES."""
    out = {}
    for c in plan.contenders:
        mine = [r for r in rows if r["codec"] == c.name]
        points = {q: ([r["bpp"] for r in mine], [r[q] for r in mine]) for q in QUALITIES if mine and q in mine[0]}
        out[c.name] = {"label": c.label, "source": "measured", "kind": c.kind, "points": points}
    for key, pub in plan.published.items():
        points = {}
        if "psnr" in pub.points and "psnr" in plan.metrics:
            points["psnr"] = pub.points["psnr"]
        if "msssim" in pub.points and "msssim" in plan.metrics:
            bpp, values = pub.points["msssim"]
            points["msssim_db"] = (bpp, [_db(v) for v in values])
        out[f"published:{key}"] = {"label": pub.label, "source": "published", "kind": "published",
                                   "file": pub.source, "points": points}
    return out


def bd_tables(curves: dict[str, dict]) -> dict[str, dict]:
    """{quality: {anchor: {test: {bd_rate %, bd_quality dB}}}} for every pair of curves."""
    tables = {}
    for q in QUALITIES:
        have = {k: c["points"][q] for k, c in curves.items() if q in c["points"]}
        if have:
            tables[q] = {a: {t: {"bd_rate": bd_rate(*pa, *pt), "bd_quality": bd_quality(*pa, *pt)}
                             for t, pt in have.items() if t != a} for a, pa in have.items()}
    return tables


def anchor(plan: Plan) -> str:
    """JPEG when measured (what papers compare against), else the first codec."""
    names = [c.name for c in plan.contenders]
    return "jpeg" if "jpeg" in names else next((c.name for c in plan.contenders if c.kind == "classic"), names[0])


def plot(curves: dict[str, dict], quality: str, title: str, stem: Path) -> bytes:
    """One RD plot as stem.png and stem.svg; published curves dashed. Returns the PNG bytes."""
    fig = Figure(figsize=(12.5, 6.5), layout="constrained")
    ax = fig.add_subplot()
    measured = [c for c in curves.values() if c["source"] == "measured" and quality in c["points"]]
    xmax = max([b for c in measured for b in c["points"][quality][0]], default=2.5) * 1.05
    seen = []
    for i, c in enumerate(measured):
        bpp, q = c["points"][quality]
        ax.plot(bpp, q, "-o", color=f"C{i % 10}", lw=2.4 if c["kind"] == "learned" else 1.4, ms=3.5, label=c["label"])
        seen += [v for b, v in zip(bpp, q, strict=True) if b <= xmax]
    published = [c for c in curves.values() if c["source"] == "published" and quality in c["points"]]
    for i, c in enumerate(published):  # grey, told apart by marker: the colours belong to what was measured
        bpp, q = c["points"][quality]
        ax.plot(bpp, q, "--", marker="x+^vsd*ph"[i % 9], color=f"{0.15 + 0.45 * (i % 3) / 2:.2f}", lw=1, ms=4,
                label=f"{c['label']} (published)")
        seen += [v for b, v in zip(bpp, q, strict=True) if b <= xmax]
    finite = [v for v in seen if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) - 0.5, max(finite) + 0.5)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("bits per pixel (file size × 8 / pixels)")
    ax.set_ylabel(QUALITIES[quality])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    files = {}
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110)
        files[fmt] = buf.getvalue()
        atomic_write(stem.with_suffix(f".{fmt}"), files[fmt], force=True)
    return files["png"]


def _finite(obj):
    """JSON has no NaN or infinity: they become null (no overlap, image too small, lossless)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _pct(v: float | None) -> str:
    return f"{v:+.1f}%" if v is not None and math.isfinite(v) else "n/a"


def _dbs(v: float | None) -> str:
    return f"{v:+.2f} dB" if v is not None and math.isfinite(v) else "n/a"


def _label(c: dict) -> str:
    return f"{c['label']} (published)" if c["source"] == "published" else c["label"]


def vs_anchor(curves: dict[str, dict], bd: dict, base: str) -> list[list[str]]:
    """Rows of the main BD table: every curve against the anchor, per quality measure.

    Also built from a results.json (its "curves", and "bdrate" less "anchor"; null is n/a) for
    the README's results table, so that table and bdrate.md are one table.
    """
    rows = [["codec"] + [h for q in bd for h in BD_HEADS[q]]]
    for key, c in curves.items():
        if key == base:
            continue
        row = [_label(c)]
        for table in bd.values():
            cell = table.get(base, {}).get(key, {"bd_rate": math.nan, "bd_quality": math.nan})
            row += [_pct(cell["bd_rate"]), _dbs(cell["bd_quality"])]
        rows.append(row)
    return rows


def _matrix(curves: dict[str, dict], table: dict) -> list[list[str]]:
    """BD-rate of each row's codec against each column's codec; columns numbered as the rows."""
    keys = list(table)
    rows = [["codec \\ against"] + [f"({i})" for i in range(1, len(keys) + 1)]]
    for i, t in enumerate(keys, 1):
        rows.append([f"({i}) {_label(curves[t])}"] + ["" if a == t else _pct(table[a][t]["bd_rate"]) for a in keys])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]]) + "\n"


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _average_rows(plan: Plan, rows: list[dict], labels: dict[str, str]) -> list[list[str]]:
    head = ["codec", "setting", "bpp", "ratio"] + list(plan.metrics)
    head += ["MS-SSIM dB"] if "msssim" in plan.metrics else []
    out = [head + ["encode ms", "decode ms"]]
    for r in rows:
        vals = [labels[r["codec"]], str(r["param"]), f"{r['bpp']:.4f}", f"{r['ratio']:.1f}"]
        vals += [f"{r[m]:.4f}" if m != "psnr" else f"{r[m]:.2f}" for m in plan.metrics]
        vals += [f"{r['msssim_db']:.2f}"] if "msssim" in plan.metrics else []
        out.append(vals + [f"{r['enc_s'] * 1000:.0f}", f"{r['dec_s'] * 1000:.0f}"])
    return out


def _page(title: str, summary: list[str], plots: dict[str, bytes], main: list[list[str]], base: str,
          matrices: dict[str, list[list[str]]], table: list[list[str]], shown: list[dict]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img.plot{max-width:100%}"
             "figure{display:inline-block;margin:6px;vertical-align:top;width:260px}"
             "figure img{width:256px;image-rendering:pixelated}figcaption{font-size:12px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary) + "</ul>",
             "<h2>Rate-distortion</h2>"]
    parts += [f"<p><img class='plot' src='{_png(png)}' alt='{html.escape(q)} vs bpp'></p>" for q, png in plots.items()]
    parts += [f"<h2>BD-rate against {html.escape(base)}</h2><p>Negative: fewer bits for the same quality "
              "(PCHIP Bjøntegaard over the common interval; n/a where the curves do not overlap).</p>",
              _html_table(main)]
    for q, rows in matrices.items():
        parts += [f"<h3>{BD_HEADS[q][0]}: each row's codec against each column's</h3>", _html_table(rows)]
    if shown:
        parts.append("<h2>Crops at matched file size</h2>")
    for s in shown:
        parts.append(f"<h3>{html.escape(s['image'])} ({s['width']}x{s['height']}), centre {CROP}x{CROP}: "
                     f"each file at most {s['budget']} bytes, the size of {html.escape(s['reference'])}</h3>")
        for t in s["tiles"]:
            if "bytes" in t:
                cap = (f"{t['label']}, {t['setting']}: file {t['bytes']} bytes ({t['bpp']:.3f} bpp), "
                       f"PSNR {t['psnr']:.2f} dB (whole image)")
            else:
                cap = f"{t['label']}: {t['setting']}" if "setting" in t else t["label"]
            img = f"<img src='{_png(t['png'])}' alt='{html.escape(t['label'])}'>" if "png" in t else ""
            parts.append(f"<figure>{img}<figcaption>{html.escape(cap)}</figcaption></figure>")
    parts += ["<h2>Mean per setting</h2>", _html_table(table), "</body></html>"]
    return "\n".join(parts)


def write(out: Path, plan: Plan, outcome: Outcome) -> None:
    """Write results.json, results.csv, rd-psnr/rd-msssim .png/.svg, bdrate.md and report.html."""
    rows = averages(plan, outcome.records)
    curve_set = curves(plan, rows)
    bd = bd_tables(curve_set)
    base = anchor(plan)
    labels = {c.name: c.label for c in plan.contenders}
    name = plan.data.resolve().name
    title = f"nic eval: {name}"
    sizes = sorted({f"{r['width']}x{r['height']}" for r in outcome.records})
    summary = [f"{len(plan.images)} images from {plan.data} ({', '.join(sizes)}); averages are means of "
               "per-image values; bpp = file bytes × 8 / pixels; metrics on 8-bit RGB",
               f"{len(outcome.records)} results: {outcome.measured} measured, {outcome.reused} reused from the "
               f"cache, in {outcome.seconds:.0f} s on {os.cpu_count()} CPU(s)"]
    summary += [f"{c.label}: settings {', '.join(map(str, c.params))} "
                f"({'weights ' + c.version[:16] if c.kind == 'learned' else c.version})" for c in plan.contenders]
    summary += [f"failed, so left out of every average: {f['image']} with {labels[f['codec']]}: {f['error']}"
                for f in outcome.failed]
    if plan.published:
        summary.append("published curves (dashed) are Kodak results of other codecs as their authors or "
                       "CompressAI report them, not measured here")
    plot_title = f"{name}: {len(plan.images)} images, mean per setting"
    plots = {q: plot(curve_set, q, plot_title, out / f"rd-{q.split('_')[0]}") for q in bd}
    main = vs_anchor(curve_set, bd, base)
    matrices = {q: _matrix(curve_set, table) for q, table in bd.items()}
    good = [s for s in plan.images if s.path.name not in {f["image"] for f in outcome.failed}]
    shown = crops(replace(plan, images=good)) if good else []

    md = [f"# BD-rate: {name} ({len(plan.images)} images)\n", f"## Against {labels[base]}\n", markdown(main)]
    md += [f"\n## {BD_HEADS[q][0]}: each row's codec against each column's\n\n" + markdown(rows)
           for q, rows in matrices.items()]
    atomic_write(out / "bdrate.md", "\n".join(md).encode(), force=True)

    with io.StringIO() as buf:
        w = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(outcome.records)
        w.writerows({**r, "image": "mean"} for r in rows)
        atomic_write(out / "results.csv", buf.getvalue().encode(), force=True)

    result = {
        "data": str(plan.data), "images": [s.path.name for s in plan.images], "metrics": list(plan.metrics),
        "codecs": {c.name: {"label": c.label, "kind": c.kind, "params": list(c.params), "version": c.version}
                   for c in plan.contenders},
        "records": outcome.records, "failed": outcome.failed, "averages": rows,
        "curves": {k: {**c, "points": {q: {"bpp": b, q: v} for q, (b, v) in c["points"].items()}}
                   for k, c in curve_set.items()},
        "bdrate": {"anchor": base, **bd},
        "crops": [{**s, "tiles": [{k: v for k, v in t.items() if k != "png"} for t in s["tiles"]]} for s in shown],
        "run": {"measured": outcome.measured, "reused": outcome.reused, "seconds": round(outcome.seconds, 1)},
        "environment": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                        "nic": nic.__version__,
                        **{p: version(p) for p in ("torch", "pillow", "pillow-heif", "pillow-jxl-plugin")}},
    }
    atomic_write(out / RESULTS, (json.dumps(_finite(result), indent=1) + "\n").encode(), force=True)
    page = _page(title, summary, plots, main, labels[base], matrices, _average_rows(plan, rows, labels), shown)
    atomic_write(out / "report.html", page.encode(), force=True)
