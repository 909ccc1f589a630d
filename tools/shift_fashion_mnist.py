#!/usr/bin/env python3
"""A shifted copy of an MNIST-style IDX dataset (Fashion-MNIST), for BatchNorm
recalibration experiments: every pixel becomes clip(contrast * x + brightness, 0, 255),
rounded, in both splits. Labels are copied unchanged.

    shift_fashion_mnist.py SRC DST [--contrast 0.5] [--brightness 60]

SRC holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz] and the t10k-
pair; DST gets the same four files, uncompressed, in the same IDX layout. Keep "fashion"
in DST's name: slim-data names the classes of an IDX folder after Fashion-MNIST's only
when its path says so, and the model's class names must match.
"""
import argparse
import gzip
import os
import sys

import numpy as np

FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def read(src, name):
    for path, opener in [(os.path.join(src, name), open), (os.path.join(src, name + ".gz"), gzip.open)]:
        if os.path.isfile(path):
            with opener(path, "rb") as f:
                return f.read()
    sys.exit(f"shift_fashion_mnist: {src} has no {name}[.gz]")


def split_idx(data, name):
    """(header bytes, payload) of an IDX file of unsigned bytes, checked."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        sys.exit(f"shift_fashion_mnist: {name} is not an IDX file of unsigned bytes")
    dims = data[3]
    header = 4 + 4 * dims
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    if len(data) - header != int(np.prod(shape)):
        sys.exit(f"shift_fashion_mnist: {name} holds {len(data) - header} bytes, its header says {shape}")
    return data[:header], data[header:]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--contrast", type=float, default=0.5)
    p.add_argument("--brightness", type=float, default=60.0)
    a = p.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for name in FILES:
        header, payload = split_idx(read(a.src, name), name)
        if "images" in name:
            x = np.frombuffer(payload, dtype=np.uint8).astype(np.float64)
            y = np.clip(np.rint(a.contrast * x + a.brightness), 0, 255).astype(np.uint8)
            print(f"{name}: mean pixel {x.mean():.1f} -> {y.mean():.1f}, std {x.std():.1f} -> {y.std():.1f}")
            payload = y.tobytes()
        tmp = os.path.join(a.dst, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)
        os.replace(tmp, os.path.join(a.dst, name))


if __name__ == "__main__":
    main()
