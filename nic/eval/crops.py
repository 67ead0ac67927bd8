"""Side-by-side crops for the report: one or two images coded by every codec at the same file
size, the part of `nic eval`'s report that codes images rather than draws them."""

from __future__ import annotations

import numpy as np

from nic import codec, container
from nic.eval import classic
from nic.eval.metrics import psnr
from nic.eval.runner import Contender, Plan
from nic.io import Picture, encode_image, read_image
from nic.models import registry

CROP = 256  # side of the centre crop shown


def _centre(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    top, left = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    return rgb[top:top + CROP, left:left + CROP]


def _at_size(contender: Contender, picture: Picture, budget: int) -> tuple[bytes, str] | None:
    """The contender's largest file within `budget` bytes, and its setting; None if none fits."""
    if contender.kind == "learned":
        data = codec.encode_to_size(picture, budget * 8 / (picture.width * picture.height), contender.model,
                                    contender.effort)
        return (data, f"quality {container.unpack(data)[0].quality}") if len(data) <= budget else None
    found = classic.largest_under(contender.name, picture.rgb, budget)
    return None if found is None else (found[1], f"{classic.get(contender.name).param_name} {found[0]}")


def crops(plan: Plan) -> list[dict]:
    """Centre crops of one or two images from every codec at matched file size.

    The size is that of the default learned model's file at its middle quality; every other
    codec gets its setting with the largest file not above it. Without a learned model, none.
    """
    learned = [c for c in plan.contenders if c.kind == "learned"]
    if not learned:
        return []
    ref = next((c for c in learned if c.model == registry.DEFAULT_MODEL), learned[0])
    quality = ref.params[len(ref.params) // 2]
    sources = [plan.images[0]] + ([plan.images[len(plan.images) // 2]] if len(plan.images) > 1 else [])
    shown = []
    for src in sources:
        pic = Picture(read_image(src.path).pixels)
        ref_data = codec.encode(pic, quality, ref.model, ref.effort)
        tiles = [{"label": "original", "png": encode_image(Picture(np.ascontiguousarray(_centre(pic.rgb))))}]
        for c in plan.contenders:
            found = (ref_data, f"quality {quality}") if c is ref else _at_size(c, pic, len(ref_data))
            if found is None:
                tiles.append({"label": c.label, "setting": "no setting fits in the size"})
                continue
            data, setting = found
            rgb = codec.decode(data).rgb if c.kind == "learned" else classic.decode(data)
            tiles.append({"label": c.label, "setting": setting, "bytes": len(data),
                          "bpp": len(data) * 8 / (pic.width * pic.height), "psnr": psnr(pic.rgb, rgb),
                          "png": encode_image(Picture(np.ascontiguousarray(_centre(rgb))))})
        shown.append({"image": src.path.name, "width": pic.width, "height": pic.height, "budget": len(ref_data),
                      "reference": f"{ref.label} at quality {quality}", "tiles": tiles})
    return shown
