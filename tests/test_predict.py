"""`make predict` refuses what is not an image it can read whole and safely, in one line."""

import io

import numpy as np
import pytest
from PIL import Image

from regbench.cli.main import dispatch
from regbench.run import predict


def png_bytes(size=(28, 28)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, size=size, dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("content, reason", [
    (b"just some text\n", "not a readable image"),
    (b"", "not a readable image"),
    (png_bytes()[:400], "not a readable image"),
], ids=["text", "empty", "truncated"])
def test_broken_files_are_refused(tmp_path, capsys, content, reason):
    path = tmp_path / "image.png"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        dispatch(["predict", "some-run", str(path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(error) == 1
    assert error[0].startswith(f"error: image {path}: {reason}")


@pytest.mark.parametrize("pixels_limit", [200, 1000])  # above 2x the limit: error; above: warning
def test_images_above_the_decompression_bomb_limit_are_refused(tmp_path, capsys, monkeypatch,
                                                               pixels_limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels_limit)
    path = tmp_path / "large.png"
    path.write_bytes(png_bytes((40, 40)))  # 1600 pixels
    with pytest.raises(SystemExit) as exit_:
        dispatch(["predict", "some-run", str(path)])
    assert exit_.value.code == 2
    assert "too large to decode safely" in capsys.readouterr().err


def test_a_good_image_becomes_one_row_of_784(tmp_path):
    path = tmp_path / "digit.png"
    path.write_bytes(png_bytes((56, 56)))
    features = predict.image_features(path)
    assert features.shape == (1, 784) and features.dtype == np.float32
