"""``python -m regbench.predict RUN_ID IMAGE`` (``make predict run=... image=...``).

Classifies one image with a run's logged model. The image (PNG, any size, colour or grey) is
turned into what the model was trained on: grey, 28x28, values in [0, 1], white digit on black
(an image whose mean is above 0.5 is taken to be dark-on-light and inverted), flattened to 784.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from regbench import cli


class ImageError(ValueError):
    """The file is not an image Pillow can read whole and safely; the message says why."""


def image_features(path: Path) -> np.ndarray:
    """A (1, 784) float32 row from an image file, as described in the module docstring.

    Raises ImageError for a file that is not an image, a broken or truncated one, and one
    above Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                grey = np.asarray(image.convert("L").resize((28, 28)), dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"image {path}: too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:  # unidentified, truncated, corrupt
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageError(f"image {path}: not a readable image ({reason})") from None
    if grey.mean() > 0.5:
        grey = 1.0 - grey
    return grey.reshape(1, 784)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify an image with a run's model.")
    parser.add_argument("run_id")
    parser.add_argument("image", type=Path)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    if not args.image.is_file():
        cli.fail(f"image {args.image}: no such file")
    try:
        features = image_features(args.image)
    except ImageError as error:
        cli.fail(str(error))

    import mlflow

    from regbench import store

    try:
        store.connect(args.tracking_uri, create=False)
    except store.StoreError as error:
        cli.fail(str(error))
    try:
        model = mlflow.keras.load_model(f"runs:/{args.run_id}/model")
    except Exception as error:
        print(f"error: run {args.run_id}: no loadable model ({str(error).splitlines()[0]})",
              file=sys.stderr)
        return 1
    probs = model.predict(features, verbose=0)[0]
    top = int(np.argmax(probs))
    print(f"class {top} (probability {probs[top]:.4f})")
    print("probabilities: " + " ".join(f"{k}:{p:.3f}" for k, p in enumerate(probs)))
    return 0


if __name__ == "__main__":
    cli.run(main)
