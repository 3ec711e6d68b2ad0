"""``regbench predict RUN_ID IMAGE`` (``make predict run=... image=...``).

Classifies one image with a run's logged model. The image (PNG, any size, colour or grey) is
turned into what the model was trained on: grey, 28x28, values in [0, 1], white digit on black
(an image whose mean is above 0.5 is taken to be dark-on-light and inverted), flattened to 784.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regbench.errors import ImageError


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
