"""The regularizer options: the one home of what each option is, built-in or the user's.

An option is a name (``regularizer=<name>``), a Keras regularizer class, the constructor
argument that ``regularizer.weight`` sets (its *strength*), further constructor arguments that
the config exposes as ``regularizer.<argument>`` (``l1_ratio``), fixed ones, and the default of
each. The arm label of a run is the option's name and the values of the strength and exposed
arguments that the built regularizer reports in ``get_config()`` (``strengths``).

``register`` stores the option's config node in Hydra's ConfigStore (group ``regularizer``), so
``regularizer=<name>`` composes without a YAML file (a YAML of another name may still set other
defaults, as conf/regularizer/l1_l2_exercise.yaml does)::

    name: <name>
    weight: <default strength>
    <argument>: <default>            # each exposed argument
    kernel:                          # null for the option without a class (none)
      _target_: <module>.<Class>     # a record of the class (``target_of``), never imported
      <strength>: ${..weight}
      <argument>: ${..<argument>}
      <fixed argument>: <value>

which is the node the YAML files of earlier versions held, so the config hashes of recorded runs
stay the same. ``build`` makes the regularizer from the registry: a config's ``_target_`` must
name its option's class, and no config value or Hydra override is imported or called (plugins
are code the user chose to run: below).

Options come from code the user chose to run: the built-ins below; the Python files named in the
environment variable ``REGBENCH_PLUGINS`` (separated by ``os.pathsep``; ``make ... plugin=FILE``
sets it, and subprocesses inherit it); and the modules of installed packages' entry points in
the group ``regbench.regularizers``. Such a module registers its class with the ``regularizer``
decorator; ``load()`` imports them once per process.

Before a class trains, ``check`` runs it through a few checks in the spirit of scikit-learn's
``check_estimator`` (``CHECKS``): on random kernels of ``CHECK_SHAPES`` it returns a finite
scalar of the kernel's dtype with a finite gradient, and ``get_config()`` holds the strength
arguments and ``from_config(get_config())`` gives the same penalty, so that the arm is labelled
and the run's model reloads.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from regbench import processes
from regbench.config.numbers import finite_number
from regbench.errors import ConfigError
from regbench.locations import CONF_DIR

GROUP = "regularizer"
PLUGINS_ENV = "REGBENCH_PLUGINS"  # Python files that register options, os.pathsep-separated
PLUGIN_TIMEOUT_ENV = "REGBENCH_PLUGIN_TIMEOUT"  # seconds a plugin's import may take
PLUGIN_TIMEOUT = 120.0  # ... unless PLUGIN_TIMEOUT_ENV says otherwise
ANNOUNCE_AFTER = 2.0  # seconds after which a plugin still importing is named on stderr
ENTRY_POINT_GROUP = "regbench.regularizers"
# where a Dense layer takes a regularizer (Keras' kernel_regularizer, activity_regularizer): the
# key of the option's node, and what ``check`` calls it on
KERNEL, ACTIVITY = "kernel", "activity"
ACTS_ON = (KERNEL, ACTIVITY)
INPUTS = {KERNEL: "a kernel", ACTIVITY: "activations"}  # what ``check`` calls each kind on
# kernels (inputs, units), or activations (batch, units); units >= 2
CHECK_SHAPES = ((16, 8), (7, 3), (3, 5))
# an activity penalty's value on a batch repeated twice over its value on the batch: Keras
# divides it by the batch size, so a penalty that is a sum over examples (ratio 2) keeps its
# strength per example whatever the batch; one that is a batch mean or statistic (ratio 1) is
# weakened as 1 / batch size
PER_EXAMPLE_RATIO = 2.0
CHECKS = ("scalar", "dtype", "finite", "gradient", "config round trip")
BUILTIN_SOURCE = "builtin"
REDUNDANCY_EPS = 1e-8  # the redundancy penalty's guard on its sums, its class's default too
# a built-in class is recorded as ``regbench.regularizers.<Class>`` wherever its code lives (the
# configs and config hashes of runs recorded before the package layout stay the same); its code
# is in BUILTIN_MODULE
BUILTIN_TARGET_PREFIX = "regbench.regularizers"
BUILTIN_MODULE = "regbench.run.regularizers"
PLUGIN_TARGET_PREFIX = "plugin"  # a user's class is ``plugin.<Class>`` however it was loaded
_loading: list[str] = []  # the plugin file or distribution being imported (its source)


@dataclass(frozen=True)
class Option:
    """One regularizer option; ``target`` is ``<module>.<Class>``, None for no penalty."""

    name: str
    target: str | None
    strength: str | None = None
    weight: float = 0.0
    arguments: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    cls: type | None = None  # given by a decorator; the built-ins' are imported on first use
    builtin: bool = False
    source: str = BUILTIN_SOURCE  # where its code came from (a plugin file, a distribution)
    acts_on: str = KERNEL  # one of ACTS_ON: the layers' kernels or their activations

    def node(self) -> dict[str, Any]:
        """The option's config node (module docstring; an activity option's class node is
        under ``activity:`` instead of ``kernel:``, so its config hash says where it acts)."""
        built = None if self.target is None else {
            "_target_": self.target, self.strength: "${..weight}",
            **{key: f"${{..{key}}}" for key in self.arguments}, **self.fixed}
        return {"name": self.name, "weight": self.weight, **self.arguments, self.acts_on: built}

    def regularizer_class(self) -> type:
        if self.cls is not None:
            return self.cls
        module, _, name = self.target.rpartition(".")
        return getattr(importlib.import_module(
            BUILTIN_MODULE if module == BUILTIN_TARGET_PREFIX else module), name)

    def label_keys(self) -> tuple[str, ...]:
        """The ``get_config()`` keys whose values label the arm: strength, then arguments."""
        return () if self.strength is None else (self.strength, *self.arguments)


_OPTIONS: dict[str, Option] = {}


def target_of(cls: type) -> str:
    """The ``_target_`` string of a class, as the configs write it: Keras' public path for a
    Keras class, ``regbench.regularizers.<Class>`` for regbench's own, and ``plugin.<Class>``
    for a user's, so that the same class has the same config hash whether it came from a file
    (a module named after the file) or an installed distribution (its package's module)."""
    if cls.__module__.startswith("keras"):
        return f"keras.regularizers.{cls.__qualname__}"
    if cls.__module__ == BUILTIN_MODULE:
        return f"{BUILTIN_TARGET_PREFIX}.{cls.__qualname__}"
    return f"{PLUGIN_TARGET_PREFIX}.{cls.__qualname__}"


def _source_of(cls: type | str | None, builtin: bool) -> str:
    """Where an option's code comes from: ``builtin``; the plugin file or distribution being
    loaded; else the module that registered it."""
    if builtin:
        return BUILTIN_SOURCE
    if _loading:
        return _loading[-1]
    return f"module {getattr(cls, '__module__', cls)}"


def _finite_non_negative(value: Any) -> bool:
    return finite_number(value) and value >= 0


def _check_class(name: str, cls: type, strength: str, arguments: tuple[str, ...]) -> None:
    import keras

    if not (isinstance(cls, type) and issubclass(cls, keras.regularizers.Regularizer)):
        raise ConfigError(f"regularizer {name}: {cls!r} is not a keras.regularizers.Regularizer "
                          "subclass")
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for argument in (strength, *arguments):
        if argument not in parameters and not takes_any:
            raise ConfigError(f"regularizer {name}: {cls.__name__} takes no argument "
                              f"{argument!r}; its arguments are "
                              f"{', '.join(p for p in parameters if p != 'self')}")


def _default(cls: type, argument: str) -> Any:
    parameter = inspect.signature(cls.__init__).parameters.get(argument)
    return None if parameter is None or parameter.default is parameter.empty else (
        parameter.default)


def register(name: str, cls: type | str | None, *, strength: str = "weight",
             arguments: tuple[str, ...] | dict[str, Any] = (), fixed: dict | None = None,
             weight: float | None = None, builtin: bool = False,
             acts_on: str = KERNEL) -> Option:
    """Make ``cls`` (a Keras regularizer class, or for a built-in its ``<module>.<Class>``;
    None: no penalty) the option ``name``. ``strength`` is the constructor argument
    ``regularizer.weight`` sets; ``arguments`` are further constructor arguments set from
    ``regularizer.<argument>`` and written into the arm label (a dict gives their defaults,
    else the constructor's); ``fixed`` are constructor arguments every run of the option
    gets; ``weight`` the default strength (else the constructor's default); ``acts_on``
    (ACTS_ON) where the model puts it: each hidden Dense layer's kernel (``kernel``) or its
    output activations (``activity``, Keras' ``activity_regularizer``, whose value Keras
    divides by the batch size).

    Raises ConfigError (one line) for a name already registered otherwise or held by a YAML
    file of conf/regularizer/, a class that is not a Keras regularizer, an argument its constructor
    does not take, a default that is not a finite number >= 0, or an ``acts_on`` not in
    ACTS_ON."""
    if not name.isidentifier():
        raise ConfigError(f"regularizer {name!r}: a name must be a Python identifier")
    if acts_on not in ACTS_ON or (cls is None and acts_on != KERNEL):
        raise ConfigError(f"regularizer {name}: acts_on={acts_on!r}; allowed are "
                          f"{', '.join(ACTS_ON)}")
    if (CONF_DIR / GROUP / f"{name}.yaml").exists():
        raise ConfigError(f"regularizer {name}: registered twice (already a YAML option)")
    names = tuple(arguments)
    if isinstance(cls, type):
        _check_class(name, cls, strength, names)
        defaults = {key: _default(cls, key) for key in names}
        weight = _default(cls, strength) if weight is None else weight
        target = target_of(cls)
    else:
        defaults, target = {}, cls
    defaults |= dict(arguments) if isinstance(arguments, dict) else {}
    weight = 0.0 if cls is None and weight is None else weight
    for key, value in {strength: weight, **defaults}.items():
        if not _finite_non_negative(value):
            raise ConfigError(f"regularizer {name}: the default of {key} must be a finite "
                              f"number >= 0 (give it to register), got {value!r}")
    option = Option(name, target, None if cls is None else strength, float(weight),
                    {key: float(value) for key, value in defaults.items()}, dict(fixed or {}),
                    cls if isinstance(cls, type) else None, builtin, _source_of(cls, builtin),
                    acts_on)
    if name in _OPTIONS and _OPTIONS[name].node() != option.node():
        raise ConfigError(f"regularizer {name}: registered twice (already "
                          f"{_OPTIONS[name].target})")
    _OPTIONS[name] = option  # the same node again: the same file imported anew
    ConfigStore.instance().store(group=GROUP, name=name, node=option.node(), provider="regbench")
    return option


def regularizer(name: str, **spec: Any):
    """Class decorator: ``@regularizer("mine")`` registers the class as option ``mine``
    (keyword arguments as ``register``'s); the class is returned unchanged."""
    def decorate(cls: type) -> type:
        register(name, cls, **spec)
        return cls
    return decorate


def _register_builtins() -> None:
    """The options regbench ships; the comment of each states its penalty on a kernel W."""
    register("none", None, builtin=True)  # no penalty: the control arm; ignores weight
    register("l1", "keras.regularizers.L1", strength="l1", weight=1e-4,  # weight * sum(|W|)
             builtin=True)
    register("l2", "keras.regularizers.L2", strength="l2", weight=1e-4,  # weight * sum(W^2)
             builtin=True)
    # weight * (l1_ratio * sum(|W|) + (1 - l1_ratio) * sum(W^2))
    register("l1_l2", f"{BUILTIN_TARGET_PREFIX}.ElasticNet", arguments={"l1_ratio": 0.5},
             weight=2e-4, builtin=True)
    # Keras' OrthogonalRegularizer on the columns: weight * mean |off-diagonal of Wn^T Wn|
    register("orthogonal", "keras.regularizers.OrthogonalRegularizer", strength="factor",
             fixed={"mode": "columns"}, weight=1e-4, builtin=True)
    # the seed notebook's redundancy penalty (regbench.run.regularizers.RedundancyRegularizer),
    # |W| normalised as the notebook wrote it (rows) and as it most likely meant it (columns)
    for name, mode in (("custom", "rows"), ("custom_columns", "columns")):
        register(name, f"{BUILTIN_TARGET_PREFIX}.RedundancyRegularizer", weight=1e-4,
                 fixed={"eps": REDUNDANCY_EPS, "mode": mode}, builtin=True)
    # on each hidden layer's activations a (batch, units), as Keras adds it to the loss:
    # weight * sum(|a|) / batch (sparse codes) and weight * sum(a^2) / batch
    register("activity_l1", "keras.regularizers.L1", strength="l1", weight=1e-5,
             builtin=True, acts_on=ACTIVITY)
    register("activity_l2", "keras.regularizers.L2", strength="l2", weight=1e-5,
             builtin=True, acts_on=ACTIVITY)


class _ImportTimedOut(Exception):
    """A plugin's import ran past PLUGIN_TIMEOUT (raised by SIGALRM's handler)."""


def _timeout() -> float:
    text = os.environ.get(PLUGIN_TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else PLUGIN_TIMEOUT
    except ValueError:
        seconds = float("nan")
    if not (finite_number(seconds) and seconds > 0):
        raise ConfigError(f"{PLUGIN_TIMEOUT_ENV}={text}: must be a number of seconds > 0")
    return seconds


@contextmanager
def _importing(plugin: str, source: str) -> Iterator[None]:
    """Run a plugin's import (``plugin`` names it in messages; ``source`` is recorded as the
    source of what it registers): a line ``importing plugin ...`` on stderr once it has taken
    ANNOUNCE_AFTER seconds; ConfigError in one line when it raises anything, ``SystemExit``
    included (a plugin cannot end or fake the end of a command), or runs past the time limit
    (``_timeout``; enforced with SIGALRM in the main thread only). Ctrl-C passes through."""
    limit = _timeout()
    announce = threading.Timer(ANNOUNCE_AFTER, lambda: print(
        f"importing plugin {plugin} (a limit of {limit:g} s; {PLUGIN_TIMEOUT_ENV} sets it)",
        file=sys.stderr, flush=True))
    announce.daemon = True
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        def expire(signum, frame):
            raise _ImportTimedOut

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
    announce.start()
    _loading.append(source)
    try:
        yield
    except (ConfigError, KeyboardInterrupt):
        raise
    except _ImportTimedOut:
        raise ConfigError(f"{plugin}: still importing after {limit:g} s, given up "
                          f"({PLUGIN_TIMEOUT_ENV} sets the limit)") from None
    except BaseException as error:  # SystemExit too (the docstring says why)
        message = str(error).strip()
        raise ConfigError(f"{plugin}: does not import: {type(error).__name__}: "
                          f"{message.splitlines()[-1] if message else ''}") from None
    finally:
        _loading.pop()
        announce.cancel()
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _import_file(path: Path) -> None:
    """Import the Python file ``path`` as a module named after it (``_importing``'s rules)."""
    if not path.is_file():
        raise ConfigError(f"{PLUGINS_ENV}={path}: no such file")
    name = f"regbench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that its classes pickle and deserialize by module name
    try:
        with _importing(f"{PLUGINS_ENV}={path}", f"file {path}"):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


@functools.cache
def load() -> None:
    """Register the user's options once per process: the files named in REGBENCH_PLUGINS,
    then the entry points of group ``regbench.regularizers``. Raises ConfigError (one line)
    when one does not import (``_importing``) or registers wrongly; a failed load is tried
    again next call. TensorFlow is imported first, quietly (``processes``), when there is a
    plugin: a regularizer imports Keras, and TensorFlow's C++ start-up lines would follow."""
    files = list(filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)))
    points = list(entry_points(group=ENTRY_POINT_GROUP))
    if files or points:
        processes.import_tensorflow_quietly()
    for entry in files:
        _import_file(Path(entry).resolve())
    for point in points:
        dist = point.dist
        with _importing(f"entry point {point.name} ({point.value}) of group "
                        f"{ENTRY_POINT_GROUP}", f"distribution {dist.name}=={dist.version}"
                        if dist else f"entry point {point.value}"):
            point.load()


def names() -> list[str]:
    """Every registered option's name, sorted."""
    load()
    return sorted(_OPTIONS)


def get(name: str) -> Option:
    """The option ``name``; ConfigError naming the allowed ones when there is none."""
    load()
    if name not in _OPTIONS:
        raise ConfigError(f"regularizer.name={name}: allowed are {', '.join(sorted(_OPTIONS))}")
    return _OPTIONS[name]


def class_node(option: Option, regularizer_cfg):
    """The node of ``regularizer_cfg`` that names the option's class: ``kernel`` or
    ``activity``, as the option acts (None when it has none)."""
    return regularizer_cfg.get(option.acts_on)


def check_target(option: Option, node) -> None:
    """The one rule for a ``regularizer.kernel`` (or ``.activity``) node: its ``_target_`` is
    its option's (no node for an option without a class); else ConfigError naming what the
    option allows."""
    target = None if node is None else node.get("_target_")
    if target != option.target:
        raise ConfigError(f"regularizer.{option.acts_on}._target_={target}: option "
                          f"{option.name} instantiates "
                          f"{option.target or 'nothing (kernel: null)'} only")


def build(regularizer_cfg) -> Any:
    """The Keras regularizer of a composed ``regularizer`` node (None for no penalty): the
    option's class called with the kernel node's arguments, integers as floats (a command
    line's ``regularizer.weight=1`` is an int, which TensorFlow refuses to multiply with a
    float kernel). Raises ConfigError when the node's ``_target_`` is not its option's."""
    from omegaconf import OmegaConf

    option = get(str(regularizer_cfg.name))
    node = class_node(option, regularizer_cfg)
    check_target(option, node)
    if node is None:
        return None
    arguments = OmegaConf.to_container(node, resolve=True)
    arguments.pop("_target_")
    arguments = {key: float(value) if type(value) is int else value
                 for key, value in arguments.items()}
    try:
        return option.regularizer_class()(**arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"regularizer.{option.acts_on}: {option.name} refuses its "
                          f"arguments: {error}") from None


def strengths(option_name: str, built: Any) -> list[float]:
    """The values of the option's label keys in ``built.get_config()`` (empty for none)."""
    if built is None:
        return []
    config = built.get_config()
    return [float(config[key]) for key in get(option_name).label_keys()]


def _inputs(acts_on: str, shape: tuple[int, int]):
    """A random float32 variable of ``shape``: a kernel, or non-negative activations (as after
    a ReLU); the same draw for the same shape."""
    import numpy as np
    import tensorflow as tf

    drawn = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return tf.Variable(np.abs(drawn) if acts_on == ACTIVITY else drawn)


def _call_failure(built: Any, acts_on: str) -> tuple[str, str] | None:
    """The first of CHECKS' call checks (scalar, dtype, finite, gradient) that ``built`` fails
    on the inputs ``acts_on`` names, over CHECK_SHAPES, as (check, detail); None if it passes."""
    import numpy as np
    import tensorflow as tf

    what = INPUTS[acts_on]
    for shape in CHECK_SHAPES:
        inputs = _inputs(acts_on, shape)
        with tf.GradientTape() as tape:
            try:
                value = tf.convert_to_tensor(built(inputs))
            except Exception as error:
                return "scalar", (f"calling it on {what} of shape {shape} raised "
                                  f"{type(error).__name__}: {error}")
        if value.shape.rank != 0:
            return "scalar", (f"it returned shape {tuple(value.shape)} for {what} of shape "
                              f"{shape}, not a scalar")
        if value.dtype != inputs.dtype:
            return "dtype", f"it returned {value.dtype.name} for float32 {what}"
        if not np.isfinite(value.numpy()):
            return "finite", f"it returned {value.numpy()} for {what} of shape {shape}"
        gradient = tape.gradient(value, inputs)
        if gradient is None or not np.all(np.isfinite(gradient.numpy())):
            return "gradient", (f"its gradient for {what} of shape {shape} is "
                                f"{'missing' if gradient is None else 'not finite'}")
    return None


def check(option_name: str, built: Any) -> None:
    """Run ``built`` through CHECKS on random float32 inputs of CHECK_SHAPES (kernels
    (inputs, units), or for an activity option activations (batch, units), non-negative as
    after a ReLU); ConfigError naming the option and the failed check. A class that fails a
    call check on its own kind of input and passes them all on the other kind is said to look
    like the other kind (a kernel penalty taken for an activity one, or the reverse: a log of
    a mean activation is not finite on a kernel's negative weights). For an activity option,
    ``batch_ratio`` is measured and a penalty whose ratio is not PER_EXAMPLE_RATIO is warned
    about (``warnings``), once per option. Nothing to check for no penalty."""
    if built is None:
        return
    import numpy as np

    acts_on = get(option_name).acts_on

    def fail(check_name: str, detail: str) -> None:
        raise ConfigError(f"regularizer={option_name}: {type(built).__name__} fails the check "
                          f"'{check_name}': {detail}")

    failure = _call_failure(built, acts_on)
    if failure:
        other = ACTIVITY if acts_on == KERNEL else KERNEL
        if _call_failure(built, other) is None:
            fail(failure[0], f"{failure[1]}; on {INPUTS[other]} it passes them all: it looks "
                             f"like {'a kernel' if other == KERNEL else 'an activity'} "
                             f"regularizer (register it with acts_on={other!r})")
        fail(*failure)
    inputs = _inputs(acts_on, CHECK_SHAPES[-1])
    value = built(inputs)
    missing = [key for key in get(option_name).label_keys() if key not in built.get_config()]
    if missing:
        fail("config round trip", f"get_config() has no {', '.join(missing)} (the arm label "
                                  "and the reloaded model read the strength from it)")
    try:
        again = type(built).from_config(built.get_config())(inputs)
    except Exception as error:
        fail("config round trip", f"from_config(get_config()) raised {type(error).__name__}: "
                                  f"{error}")
    if not np.isclose(float(again), float(value), rtol=1e-6, atol=0.0):
        fail("config round trip", f"from_config(get_config()) gives {float(again)}, not "
                                  f"{float(value)}")
    if acts_on == ACTIVITY:
        _warn_of_batch_scale(option_name, batch_ratio(built, inputs))


def batch_ratio(built: Any, activations) -> float:
    """f(the batch twice over) / f(the batch): PER_EXAMPLE_RATIO for a sum over examples, 1
    for a batch mean or a batch statistic (a covariance), NaN when f is 0 on the batch."""
    import tensorflow as tf

    once = float(built(activations))
    twice = float(built(tf.concat([activations, activations], axis=0)))
    return twice / once if once else float("nan")


@functools.cache
def _warn_of_batch_scale(option_name: str, ratio: float) -> None:
    import math
    import warnings

    if math.isnan(ratio) or math.isclose(ratio, PER_EXAMPLE_RATIO, rel_tol=1e-3):
        return
    warnings.warn(f"regularizer={option_name}: on a batch repeated twice its value is "
                  f"{ratio:.3g}x its value on the batch, not {PER_EXAMPLE_RATIO:g}x: Keras divides "
                  "an activity penalty by the batch size, so its strength per example changes "
                  "with trainer.batch_size (a batch statistic: multiply it by the batch size, "
                  "ops.shape(x)[0])", UserWarning, stacklevel=3)


_register_builtins()
