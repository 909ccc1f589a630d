"""What both test files use: the repository's paths, Fashion-MNIST test images (also as PNG
files) and the `slim-run` binary, the Rust API the tests compare with."""

import gzip
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "models" / "fashion-mnist-resnet20"
WIDTHS = [1.0, 0.75, 0.5, 0.25]


def fashion_mnist_images(n):
    """The first `n` Fashion-MNIST test images as uint8 [n, 28, 28], with their labels."""
    base = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))

    def read(name):
        plain = base / name
        return plain.read_bytes() if plain.exists() else gzip.open(f"{plain}.gz").read()

    images = read("t10k-images-idx3-ubyte")
    count, rows, cols = struct.unpack(">III", images[4:16])
    assert count >= n
    pixels = np.frombuffer(images, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)
    labels = np.frombuffer(read("t10k-labels-idx1-ubyte"), np.uint8, n, 8)
    return pixels, labels


def write_png(path, gray):
    """A grayscale 8-bit PNG of `gray` [h, w] (the format's own chunks, no imaging library)."""
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[y].tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def fashion_mnist_pngs(folder, n):
    """The first `n` Fashion-MNIST test images as PNG files in `folder`: (paths, labels)."""
    pixels, labels = fashion_mnist_images(n)
    paths = []
    for i, img in enumerate(pixels):
        p = folder / f"test-{i}.png"
        write_png(p, img)
        paths.append(str(p))
    return paths, labels


def slim_run(model_dir, *args):
    """`slim-run --model model_dir args...`'s standard output."""
    binary = os.environ.get("SLIM_RUN", str(ROOT / "target" / "debug" / "slim-run"))
    assert Path(binary).is_file(), f"{binary}: build slim-run first (tools/python.sh does)"
    out = subprocess.run([binary, "--model", str(model_dir), *args], capture_output=True,
                         text=True, check=True)
    return out.stdout
