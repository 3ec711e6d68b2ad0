"""The served model and `make predict` give the classes the model gives in memory."""

import json
import os
import signal
import subprocess
import urllib.request

import mlflow
import numpy as np
import pytest
from PIL import Image

from helpers import PROJECT_ROOT, free_port, runs, sqlite_uri, train, wait_until_up
from regbench.run.data import load_mnist


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A small model trained on real MNIST; yields (store, run id, its model in memory)."""
    store = tmp_path_factory.mktemp("serving")
    result = train(store, "model=mlp_small", "data.limit=2000", "trainer=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = runs(store).iloc[0].run_id
    mlflow.set_tracking_uri(sqlite_uri(store))
    return store, run_id, mlflow.keras.load_model(f"runs:/{run_id}/model")


@pytest.fixture(scope="module")
def test_images():
    arrays = load_mnist()
    return arrays["x_test"][:32], arrays["y_test"][:32]


def test_the_served_model_classifies_like_the_model_in_memory(mnist_run, test_images):
    store, run_id, model = mnist_run
    images, labels = test_images
    features = images.reshape(len(images), -1).astype(np.float32) / 255.0
    port = free_port()
    server = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"run={run_id}", f"port={port}"],
        cwd=PROJECT_ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": sqlite_uri(store)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server, timeout=180)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": features.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.array(json.load(response)["predictions"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    in_memory = model.predict(features, verbose=0)
    assert served.shape == (32, 10)
    np.testing.assert_array_equal(served.argmax(axis=1), in_memory.argmax(axis=1))
    assert np.mean(served.argmax(axis=1) == labels) > 0.7


@pytest.mark.parametrize("inverted", [False, True])
def test_make_predict_classifies_a_png(mnist_run, test_images, tmp_path, inverted):
    store, run_id, model = mnist_run
    image = test_images[0][7]
    png = tmp_path / "digit.png"
    Image.fromarray(255 - image if inverted else image).save(png)
    result = subprocess.run(
        ["make", "--no-print-directory", "predict", f"run={run_id}", f"image={png}"],
        cwd=PROJECT_ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": sqlite_uri(store)},
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = model.predict(image.reshape(1, 784).astype(np.float32) / 255.0, verbose=0)
    assert f"class {int(expected.argmax())} " in result.stdout
