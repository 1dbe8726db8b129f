"""Pictures of an explanation (PIL): attribution heat maps, neuron-group region maps, the semantic
dictionary grid, channel thumbnails; and ``write_explanation`` (JSON + PNGs of ``summit explain``).

Colours match the explorer page: attribution red (positive) / blue (negative) over a dimmed
grey copy of the image; group i in ``PALETTE[i % 10]`` (D3's Tableau10).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .explainer import Explainer
    from .result import Explanation, LayerExplanation

PALETTE = ["#4e79a7", "#f28e2c", "#e15759", "#76b7b2", "#59a14f", "#edc949", "#af7aa1", "#ff9da7",
           "#9c755f", "#bab0ab"]
POSITIVE = (214, 39, 40)
NEGATIVE = (31, 119, 180)
THUMB_PX = 64


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def channel_thumbnail(run_dir: str | os.PathLike, layer: str, channel: int, px: int = THUMB_PX) -> Image.Image | None:
    """A channel's face: its rendered feature visualization, else its best dataset-example patch
    (first patch of the example strip), else None."""
    from ..pipeline.examples import PATCH_PX
    from ..run.layout import featurevis_path
    fv = featurevis_path(run_dir, layer, channel)
    if fv.is_file():
        with Image.open(fv) as im:
            return im.convert("RGB").resize((px, px), Image.Resampling.BILINEAR)
    strip = Path(run_dir) / "examples" / layer / f"{channel}.jpg"
    if strip.is_file():
        with Image.open(strip) as im:
            return im.convert("RGB").crop((0, 0, PATCH_PX, PATCH_PX)).resize((px, px), Image.Resampling.BILINEAR)
    return None


def _upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) floats resized (bilinear) to (height, width) = size."""
    im = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    return np.asarray(im.resize((size[1], size[0]), Image.Resampling.BILINEAR))


def _dimmed(image: Image.Image) -> np.ndarray:
    grey = np.asarray(image.convert("L"), dtype=np.float32)[..., None]
    return 0.35 * grey + 0.65 * 255.0 * np.ones(3)


def heatmap(image: Image.Image, values: np.ndarray) -> Image.Image:
    """Attribution (H, W) over the image: red where it pushes the class up, blue where down."""
    base = _dimmed(image)
    v = _upsample(values, (image.height, image.width))
    peak = float(np.abs(v).max()) or 1.0
    strength = np.clip(np.abs(v) / peak, 0, 1)[..., None]
    color = np.where(v[..., None] >= 0, np.array(POSITIVE), np.array(NEGATIVE))
    return Image.fromarray((base * (1 - strength) + color * strength).round().astype(np.uint8))


def group_map(image: Image.Image, maps: np.ndarray) -> Image.Image:
    """Each pixel in the colour of its strongest neuron group, opaque where that group is strong."""
    base = _dimmed(image)
    up = np.stack([_upsample(m / (m.max() or 1.0), (image.height, image.width)) for m in maps])
    best = up.argmax(0)
    strength = np.clip(up.max(0), 0, 1)[..., None]
    colors = np.array([rgb(PALETTE[i % len(PALETTE)]) for i in range(len(maps))], dtype=np.float32)
    return Image.fromarray((base * (1 - strength) + colors[best] * strength).round().astype(np.uint8))


def dictionary(run_dir: str | os.PathLike, layer: LayerExplanation, cell_px: int = 48,
               vis: list[Path | None] | None = None) -> Image.Image:
    """The semantic dictionary: per cell the face of its strongest channel (or, where rendered,
    what the network sees there), its area proportional to the activation vector's length."""
    vec = layer.cell_vectors()
    norm = np.linalg.norm(vec, axis=1)
    peak = float(norm.max()) or 1.0
    yb, xb = layer.bounds
    rows, cols = len(yb) - 1, len(xb) - 1
    canvas = Image.new("RGB", (cols * cell_px, rows * cell_px), (255, 255, 255))
    thumbs: dict[int, Image.Image | None] = {}
    for i, v in enumerate(vec):
        side = int(round(cell_px * np.sqrt(norm[i] / peak)))
        if side < 2:
            continue
        rendered = vis[i] if vis is not None else None
        face: Image.Image | None
        if rendered is not None:
            with Image.open(rendered) as im:
                face = im.convert("RGB")
        else:
            ch = int(np.argmax(v))
            if ch not in thumbs:
                thumbs[ch] = channel_thumbnail(run_dir, layer.name, ch)
            face = thumbs[ch]
        if face is None:
            face = Image.new("RGB", (2, 2), (120, 120, 120))
        r, c = divmod(i, cols)
        off = (cell_px - side) // 2
        canvas.paste(face.resize((side, side), Image.Resampling.BILINEAR), (c * cell_px + off, r * cell_px + off))
    return canvas


def write_explanation(expl: Explanation, out: Path) -> list[Path]:
    """explain.json and PNGs: input.png; per layer <layer>-attribution-<k>.png (one per explained
    class, in the order of "classes"), <layer>-groups.png, <layer>-dictionary.png."""
    from ..run.files import write_json
    out.mkdir(parents=True, exist_ok=True)
    img = expl.input.image
    files = {"input": "input.png"}
    img.save(out / "input.png")
    for name, layer in expl.layers.items():
        for k, spatial in enumerate(layer.spatial):
            files[f"{name}/attribution/{k}"] = f"{name}-attribution-{k}.png"
            heatmap(img, spatial).save(out / files[f"{name}/attribution/{k}"])
        files[f"{name}/groups"] = f"{name}-groups.png"
        group_map(img, layer.groups.maps).save(out / files[f"{name}/groups"])
        files[f"{name}/dictionary"] = f"{name}-dictionary.png"
        dictionary(expl.run.path, layer).save(out / files[f"{name}/dictionary"])
    write_json({**expl.to_json(), "files": files}, out / "explain.json")
    return [out / "explain.json"] + [out / f for f in files.values()]


def write_renders(explainer: Explainer, expl: Explanation, out: str | os.PathLike, size: int, steps: int,
                  progress: bool = True) -> list[Path]:
    """Render (cached in the run) what the network sees at every cell and every group's direction;
    write <layer>-sees.png (the dictionary drawn with those renders) and <layer>-group-<g>.png."""
    import shutil
    out = Path(out)
    files: list[Path] = []
    for name, layer in expl.layers.items():
        sees = explainer.render(expl, name, "positions", size=size, steps=steps, progress=progress)
        files.append(out / f"{name}-sees.png")
        dictionary(expl.run.path, layer, vis=list(sees)).save(files[-1])
        for g, p in enumerate(explainer.render(expl, name, "groups", size=size, steps=steps, progress=progress)):
            files.append(out / f"{name}-group-{g}.png")
            shutil.copyfile(p, files[-1])
    return files
