"""Every error regbench raises on bad input, each with a one-line message that names what is
wrong and what is allowed. The commands (``regbench.cli``) print it as ``error: <message>`` and
exit 2; the library only raises."""


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line naming the key."""


class CalibrationError(ConfigError):
    """The probe cannot place a grid (its share does not grow with the strength)."""


class CompareError(RuntimeError):
    """Nothing to compare, or not what was asked for; the message says what to do."""


class StoreError(RuntimeError):
    """The tracking store cannot be used; the message (one line) names it and says why."""


class DataError(RuntimeError):
    """A dataset is missing, corrupt or cannot be obtained; the message says which and why."""


class ImageError(ValueError):
    """The file is not an image Pillow can read whole and safely; the message says why."""
