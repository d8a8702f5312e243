"""Quality of the stereo warp against a real stereo pair with true disparity (Middlebury 2014 motorcycle).

scikit-image ships the pair (``skimage.data.stereo_motorcycle()``: left and right 741x500 images and
the left image's true disparity in pixels). The left image is the "camera"; the warper renders the
right eye from it with the true disparity (per-eye disparity = the pair's disparity, so the right eye
sits one full baseline to the right), and the synthesised right eye is compared with the real right
image. Reported (PSNR in dB over the RGB values):

* ``sharp``: all pixels, with the true (sharp-edged) disparity;
* ``drawn`` / ``filled``: the pixels the warp drew / filled in (holes: disocclusions and the strip
  at the right frame edge that the left camera never saw), with the sharp disparity;
* ``blurred``: all pixels, with the depth blurred by a Gaussian of 2 px (sigma) the way a depth
  network's edges are soft (depth = f * B / (disparity + doffs) is blurred, then turned back into
  disparity), and ``blurred filled`` on that run's filled pixels.

Pixels without true disparity (NaN, 7 %: mostly the parts of the background that the right camera
cannot see) get the smaller (farther) of the nearest known disparities to their left and right on
their row, the usual way to fill occlusions in a disparity map.

Run: python -m benchmarks.bench_stereo_quality [--fill smooth|row|none] [--edge_sharpen N] [--edge_dilation N]
[--sweep]
(with ``--legacy``, only the options main's warper had are used, so the script also runs against an
older checkout of mvda to measure "before").
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

#: Middlebury 2014 motorcycle at a quarter of the size (scikit-image's copy): focal length (px),
#: baseline (m) and the principal points' x offset (px), from skimage.data.stereo_motorcycle's docstring.
FOCAL_PX = 994.978
BASELINE_M = 0.193001
DOFFS_PX = 31.086


def load_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left (H, W, 3) uint8, right (H, W, 3) uint8, disparity (H, W) float32 px with holes filled)."""
    from skimage.data import stereo_motorcycle

    left, right, disparity = stereo_motorcycle()
    return left, right, fill_unknown_disparity(disparity)


def fill_unknown_disparity(disparity: np.ndarray) -> np.ndarray:
    """(H, W) disparity with non-finite values replaced by the smaller of the nearest finite values left
    and right on the same row (the farther surface); rows with none stay at 0."""
    known = np.isfinite(disparity)
    h, w = disparity.shape
    cols = np.broadcast_to(np.arange(w), (h, w))
    left = np.maximum.accumulate(np.where(known, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(known, cols, w)[:, ::-1], axis=1)[:, ::-1]
    big = np.float32(np.inf)
    left_value = np.where(left >= 0, np.take_along_axis(disparity, left.clip(0, w - 1), 1), big)
    right_value = np.where(right < w, np.take_along_axis(disparity, right.clip(0, w - 1), 1), big)
    filled = np.where(known, disparity, np.minimum(left_value, right_value))
    return np.where(np.isfinite(filled), filled, 0.0).astype(np.float32)


def blur_depth(disparity: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The disparity of the depth f * B / (disparity + doffs) blurred by a Gaussian of ``sigma`` px."""
    from scipy.ndimage import gaussian_filter

    depth = FOCAL_PX * BASELINE_M / (disparity.astype(np.float64) + DOFFS_PX)     # metres
    soft = gaussian_filter(depth, sigma, mode="nearest")
    return (FOCAL_PX * BASELINE_M / soft - DOFFS_PX).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two uint8 images (over the pixels in ``mask``, (H, W) bool, if given)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    mse = float(np.mean(diff ** 2)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def synthesise_right(left: np.ndarray, disparity: np.ndarray, legacy: bool = False,
                     **options) -> tuple[np.ndarray, np.ndarray]:
    """The right eye rendered from the left image: (image (H, W, 3) uint8, filled (H, W) bool).

    ``options``: the comfort and warper settings (``fill``, ``edge_sharpen``, ``edge_dilation``, ...);
    default: the defaults of stero_rerender.py. With ``legacy``
    only :class:`StereoWarper`'s arguments of main before issue 13 are passed.
    """
    from mvda.ops.stereo_warp import StereoWarper

    h, w = disparity.shape
    d = torch.from_numpy(disparity)
    if not legacy:
        from mvda.ops import stereo_comfort

        sharpen = options.pop("edge_sharpen", stereo_comfort.DEFAULT_EDGE_SHARPEN)
        dilation = options.pop("edge_dilation", stereo_comfort.DEFAULT_EDGE_DILATION)
        d = stereo_comfort.dilate_depth_edges(stereo_comfort.sharpen_depth_edges(d, sharpen), dilation)
    warper = StereoWarper(h, w, **options)
    views = warper.render(left, d.numpy())
    return views.right, views.right_filled


def quality(left: np.ndarray, right: np.ndarray, disparity: np.ndarray, legacy: bool = False,
            **options) -> dict[str, float]:
    """PSNR (dB) of the synthesised right eye: sharp / drawn / filled (and its two parts: the strip at
    the right frame edge that the left camera never saw, and the disocclusions) / blurred / blurred
    filled, and the filled fraction of the sharp run."""
    image, filled = synthesise_right(left, disparity, legacy, **dict(options))
    blurred, blurred_filled = synthesise_right(left, blur_depth(disparity), legacy, **dict(options))
    strip = np.cumprod(filled[:, ::-1], axis=1)[:, ::-1].astype(bool)   # filled runs ending at the right edge
    return {"sharp": psnr(image, right), "drawn": psnr(image, right, ~filled),
            "filled": psnr(image, right, filled), "edge strip": psnr(image, right, strip),
            "disocclusions": psnr(image, right, filled & ~strip), "blurred": psnr(blurred, right),
            "blurred filled": psnr(blurred, right, blurred_filled), "filled fraction": float(filled.mean())}


def report(name: str, q: dict[str, float]) -> str:
    return (f"{name}: sharp {q['sharp']:.2f} dB, drawn {q['drawn']:.2f}, filled {q['filled']:.2f} "
            f"({100 * q['filled fraction']:.1f} % of pixels; edge strip {q['edge strip']:.2f}, disocclusions "
            f"{q['disocclusions']:.2f}), blurred {q['blurred']:.2f} (filled {q['blurred filled']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legacy", action="store_true", help="only main's warper options (to measure before)")
    parser.add_argument("--fill", default=None, help="smooth, row or none (default: the warper's)")
    parser.add_argument("--edge_sharpen", type=int, default=None, help="pixels (default: the script's default)")
    parser.add_argument("--edge_dilation", type=int, default=None, help="pixels (default: the script's default)")
    parser.add_argument("--sweep", action="store_true", help="also sweep edge dilation 0..4 and the fills")
    args = parser.parse_args()
    left, right, disparity = load_pair()
    print(f"Middlebury 2014 motorcycle (scikit-image), {left.shape[1]}x{left.shape[0]}, true disparity "
          f"{disparity.min():.1f}..{disparity.max():.1f} px")
    options: dict = {}
    if args.fill is not None:
        options["fill"] = args.fill
    for name in ("edge_sharpen", "edge_dilation"):
        if getattr(args, name) is not None and not args.legacy:
            options[name] = getattr(args, name)
    t0 = time.perf_counter()
    print(report("legacy settings" if args.legacy else "settings " + (str(options) if options else "default"),
                 quality(left, right, disparity, args.legacy, **options)) + f" [{time.perf_counter() - t0:.1f} s]")
    if args.sweep and not args.legacy:
        for fill in ("row", "smooth"):
            for sharpen in range(0, 4):
                for dilation in range(0, 4):
                    print(report(f"fill {fill}, edge_sharpen {sharpen}, edge_dilation {dilation}",
                                 quality(left, right, disparity, fill=fill, edge_sharpen=sharpen,
                                         edge_dilation=dilation)))


if __name__ == "__main__":
    main()
