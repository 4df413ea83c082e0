"""A seeded synthetic image folder in VGGFace2's layout, for data-pipeline and training benchmarks.

The images are synthetic: smooth random colour fields, not faces of people. Each identity has its
own appearance (a random 6x6x3 colour template seeded by ``(seed, identity)``, upscaled
bicubically); each of its images is that template with a small random shift (up to 4 pixels each
way), a brightness and contrast change and Gaussian pixel noise, so a classifier can learn the
identities but not trivially. RGB JPEGs, 160x160 and quality 90 by default, about 9-10 KB each.

Layout (identity folders ``n`` + 6 digits, files numbered from 1, as in VGGFace2)::

    OUT/n000000/0001_01.jpg
    OUT/n000000/0002_01.jpg
    ...
    OUT/n009999/0100_01.jpg

The images are spread over the identities as evenly as possible: identity ``i`` gets
``images // identities`` of them, and the first ``images % identities`` identities one more.

Every image is fully determined by ``(seed, identity, image index)``
(``numpy.random.default_rng([seed, identity, index])``), so the folder is the same whatever the
number of workers. Work is split by chunks of identities over all the cores this process may use
(``os.sched_getaffinity``). Re-running is cheap and safe: an identity whose files all exist is
skipped, and each file is written under a temporary name in its folder and renamed into place,
so a killed run never leaves a truncated image.

The two folders the benchmarks use::

    python bench/make_faces.py /work/faces-10k --images 10000 --identities 1000 --seed 0
    python bench/make_faces.py /work/faces-1m --images 1000000 --identities 10000 --seed 0

The second is about 10 GB.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
from PIL import Image

TEMPLATE = 6  # side of the per-identity low-resolution colour template
SHIFT = 4  # largest shift of an image against its identity's template, in pixels
NOISE = 10.0  # standard deviation of the pixel noise, in 8-bit levels


def identity_dir(identity: int) -> str:
    """The folder name of an identity: ``n`` + 6 digits."""
    return f"n{identity:06d}"


def image_name(index: int) -> str:
    """The file name of an identity's image ``index`` (0-based): ``NNNN_01.jpg``, 1-based."""
    return f"{index + 1:04d}_01.jpg"


def images_of(identity: int, images: int, identities: int) -> int:
    """How many images identity ``identity`` gets out of ``images`` over ``identities``."""
    return images // identities + (1 if identity < images % identities else 0)


def template(seed: int, identity: int, size: int) -> np.ndarray:
    """The identity's appearance: a float32 ``(size + 2*SHIFT, size + 2*SHIFT, 3)`` colour field."""
    rng = np.random.default_rng([seed, identity])
    small = (rng.random((TEMPLATE, TEMPLATE, 3)) * 255.0).astype(np.uint8)
    side = size + 2 * SHIFT
    big = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32)


def render(seed: int, identity: int, index: int, size: int, base: np.ndarray) -> np.ndarray:
    """Image ``index`` of an identity whose ``template`` is ``base``: uint8 ``(size, size, 3)``."""
    rng = np.random.default_rng([seed, identity, index])
    dx, dy = rng.integers(0, 2 * SHIFT + 1, size=2)
    img = base[dy : dy + size, dx : dx + size] * np.float32(rng.uniform(0.8, 1.2))
    img += np.float32(rng.uniform(-20.0, 20.0))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(NOISE)
    img += np.float32(0.5)
    np.clip(img, 0.0, 255.0, out=img)
    return img.astype(np.uint8)


def make_identity(
    out: str, seed: int, identity: int, count: int, size: int, quality: int
) -> tuple[int, int]:
    """Write the missing images of one identity; return (images written, bytes of its files)."""
    folder = os.path.join(out, identity_dir(identity))
    os.makedirs(folder, exist_ok=True)
    present = set(os.listdir(folder))
    names = [image_name(k) for k in range(count)]
    for name in present:  # leftovers of a killed run
        if ".tmp" in name:
            os.remove(os.path.join(folder, name))
    written = 0
    total = 0
    base = None
    for k, name in enumerate(names):
        path = os.path.join(folder, name)
        if name in present:
            total += os.stat(path).st_size
            continue
        if base is None:
            base = template(seed, identity, size)
        buf = io.BytesIO()
        Image.fromarray(render(seed, identity, k, size, base)).save(
            buf, format="JPEG", quality=quality
        )
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
        os.replace(tmp, path)
        written += 1
        total += buf.tell()
    return written, total


def _chunk(job: tuple[str, int, list[tuple[int, int]], int, int]) -> tuple[int, int, int]:
    out, seed, work, size, quality = job
    written = total = 0
    for identity, count in work:
        w, b = make_identity(out, seed, identity, count, size, quality)
        written += w
        total += b
    return sum(c for _, c in work), written, total


def generate(
    out: str,
    images: int,
    identities: int,
    size: int = 160,
    seed: int = 0,
    workers: int | None = None,
    quality: int = 90,
    chunk: int = 10,
    progress_s: float = 5.0,
) -> dict[str, float]:
    """Make (or complete) the folder ``out``; return its summary (images, bytes, seconds, ...)."""
    if identities < 1 or images < identities:
        raise ValueError("need at least one image per identity")
    workers = workers or len(os.sched_getaffinity(0))
    os.makedirs(out, exist_ok=True)
    work = [(i, images_of(i, images, identities)) for i in range(identities)]
    jobs = [(out, seed, work[i : i + chunk], size, quality) for i in range(0, len(work), chunk)]
    start = time.perf_counter()
    last = start
    done = written = total = 0
    with Pool(workers) as pool:
        for n, w, b in pool.imap_unordered(_chunk, jobs):
            done += n
            written += w
            total += b
            now = time.perf_counter()
            if now - last >= progress_s:
                last = now
                rate = written / (now - start)
                print(
                    f"{done}/{images} images ({written} written), {rate:.0f} images/s",
                    file=sys.stderr,
                    flush=True,
                )
    seconds = time.perf_counter() - start
    return {
        "images": images,
        "identities": identities,
        "written": written,
        "seconds": seconds,
        "images_per_s": written / seconds if seconds > 0 else 0.0,
        "bytes": total,
        "workers": workers,
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder (created; completed identities are kept)")
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--identities", type=int, default=10_000)
    p.add_argument("--size", type=int, default=160, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="default: the cores usable here")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    a = p.parse_args(argv)
    s = generate(a.out, a.images, a.identities, a.size, a.seed, a.workers, a.quality)
    print(
        f"images={s['images']} identities={s['identities']} written={s['written']} "
        f"seconds={s['seconds']:.1f} images/s={s['images_per_s']:.0f} bytes={s['bytes']} "
        f"({s['bytes'] / 2**30:.2f} GiB) workers={s['workers']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
