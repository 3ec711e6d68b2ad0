"""regbench: compare regularizers for neural networks, every run recorded in MLflow.

The one name a plugin file imports is ``regularizer``, the decorator that registers a
regularizer class as an option (``from regbench import regularizer``; it is
``regbench.config.registry.regularizer``). It is looked up on first use, so ``import regbench``
alone loads nothing else."""

__all__ = ["regularizer"]


def __getattr__(name: str):
    if name == "regularizer":
        from regbench.config.registry import regularizer

        return regularizer
    raise AttributeError(f"module 'regbench' has no attribute {name!r}")
