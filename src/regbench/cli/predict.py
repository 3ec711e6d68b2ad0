"""``regbench predict RUN_ID IMAGE`` (``make predict run=... image=...``): classify one image
with a run's logged model (``regbench.run.predict`` turns the image into the model's input)."""

from __future__ import annotations

import sys
from pathlib import Path

from regbench.cli import common
from regbench.errors import ImageError, StoreError
from regbench.run.predict import image_features


def main(argv: list[str]) -> int:
    parser = common.ArgumentParser(prog="regbench predict",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("image", type=Path)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    if not args.image.is_file():
        common.fail(f"image {args.image}: no such file")
    try:
        features = image_features(args.image)
    except ImageError as error:
        common.fail(str(error))

    import mlflow
    import numpy as np

    from regbench.run import store

    try:
        store.connect(args.tracking_uri, create=False)
    except StoreError as error:
        common.fail(str(error))
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
