"""What every experiment's command line shares: flag parsing with one-line config errors,
bad input as one line and exit status 2, signals deferred to safe points, quiet start-up.

``python -m experiments.<name> ...`` calls ``cli.run(main)``. A mistake on the command line
or in the config (an unknown field, a bad value, a wrong name, a missing data folder) prints
one line, ``error: ...`` with the fix, and exits with status 2 (absl's usage-error style),
never a library traceback; nothing in the workdir has been touched by then (the library
checks everything before it writes). A diverging run is reported the same way. A run
stopped by SIGINT or SIGTERM exits with 130 or 143 (``lib.interrupt``). Tracebacks are
left for real bugs. ``--show_config`` prints the resolved config with each field's meaning.
Compiled programs are cached on disk between runs (``_start_up``).

Launched as several processes (``srun``, ``mpirun``, or the ``SCORELAB_*`` variables of
``lib.distributed``), an experiment joins one multi-process JAX run before anything touches
a device; only the experiments in ``MULTI_PROCESS`` can, the others refuse with one line and
exit status 2. Processes other than 0 log warnings and errors only.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging as std_logging
import os
import re
import runpy
import sys
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as config_flags_impl

from lib import distributed, interrupt, metrics

# The experiments that run as several processes of one multi-process JAX run.
MULTI_PROCESS = (
    "experiments.sweep",
    "experiments.train",
    "experiments.ensemble",
    "experiments.tune",
)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Errors the library raises for bad input, each with a message that names the fix (OSError:
# a missing data file or config file, a full disk).
BAD_INPUT = (ValueError, OSError, FloatingPointError)


def _fail(message: str, status: int = 2) -> None:
    """``error: <message>`` on one line (whitespace runs collapsed), then exit ``status``."""
    one_line = re.sub(r"\s+", " ", message).strip()
    sys.stderr.write(f"error: {one_line}\n")
    distributed.exit_now(status)  # in a multi-process run, never JAX's shutdown barrier


def unknown_field_message(field: str, paths: list[str]) -> str:
    """The error for ``--config.<field>`` naming no field, with the full paths it may mean:
    the same name elsewhere (``num_epochs`` -> ``train.num_epochs``) or a near spelling."""
    leaf = field.split(".")[-1]
    leaves = [p.split(".")[-1] for p in paths]
    near_leaves = set(difflib.get_close_matches(leaf, leaves, n=3, cutoff=0.8))
    guesses = difflib.get_close_matches(field, paths, n=3, cutoff=0.8)
    guesses += [p for p, name in zip(paths, leaves) if name == leaf]
    guesses += [p for p, name in zip(paths, leaves) if name in near_leaves]
    guesses = list(dict.fromkeys(guesses))[:3]
    hint = (
        "did you mean " + " or ".join(f"--config.{g}" for g in guesses) + "?"
        if guesses
        else "print the fields with --show_config"
    )
    return f"--config.{field}: the config has no field {field!r}; {hint}"


def _config_file(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _config_error(error: Exception, argv: list[str], config_file: str | None, extend=None) -> None:
    """Exits with one line for an error raised while a config and its overrides were read."""
    if isinstance(error, (AttributeError, KeyError)):
        path = _config_file(argv) or config_file
        try:
            config = runpy.run_path(path)["get_config"]() if path else None
            if config is not None and extend is not None:
                extend(config)  # the fields the experiment adds (experiments.tune)
            tree = None if config is None else config.to_dict()
        except Exception:  # noqa: BLE001 (a broken config file: its own error is shown below)
            tree = None
        if tree is not None:
            paths = list(metrics.flatten(tree))
            for arg in argv[1:]:
                if arg.startswith("--config."):
                    field = arg[len("--config.") :].split("=")[0]
                    if field not in paths:
                        _fail(unknown_field_message(field, paths))
    _fail(str(error).strip("\"'").replace("\\n", " ").replace("\\'", "'"))


CONFIG_ERRORS = (AttributeError, KeyError, TypeError, ValueError)
_DEFAULT_CONFIG: dict[int, str | None] = {}  # id(flag values) -> define_config's default


def define_config(
    default: str | None,
    help_text: str,
    flag_values: flags.FlagValues = flags.FLAGS,
    argv: list[str] | None = None,
    extend: Callable[[Any], Any] | None = None,
):
    """``config_flags.DEFINE_config_file("config", default, help_text)``; a bad override of
    the default config (applied as the flag is defined) exits with one line.

    ``flag_values`` and ``argv`` (default: absl's flags and ``sys.argv``) let a test define
    and parse a command line of its own. ``extend(config)`` adds fields to every loaded
    config file before the ``--config.*`` overrides apply (``experiments.tune`` adds its
    ``search`` and ``ensemble`` blocks to any training config: they override like the file's
    own fields)."""
    _DEFAULT_CONFIG[id(flag_values)] = default
    _EXTEND[id(flag_values)] = extend
    try:
        if extend is None:
            return config_flags.DEFINE_config_file(
                "config", default, help_text, flag_values=flag_values, sys_argv=argv
            )
        flag = config_flags_impl._ConfigFlag(  # DEFINE_config_file's flag, our file parser
            parser=_ExtendingParser(extend),
            serializer=flags.ArgumentSerializer(),
            name="config",
            default=default,
            help_string=help_text,
            flag_values=flag_values,
            sys_argv=argv,
        )
        return flags.DEFINE_flag(flag, flag_values)
    except CONFIG_ERRORS as e:
        _config_error(e, sys.argv if argv is None else argv, default, extend)


_EXTEND: dict[int, Callable[[Any], Any] | None] = {}  # id(flag values) -> define_config's


class _ExtendingParser(config_flags_impl.ConfigFileFlagParser):
    """The config-file parser, then ``extend`` on the config before it is locked."""

    def __init__(self, extend: Callable[[Any], Any]):
        super().__init__(name="config", lock_config=False)
        self._extend = extend

    def parse(self, path):
        config = super().parse(path)
        if isinstance(config, ml_collections.ConfigDict):
            self._extend(config)
            config.lock()
        return config


def _parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """``flag_values(argv)``, with absl's and the config's errors as one line (exit 2)."""
    try:
        return flag_values(argv)
    except flags.UnrecognizedFlagError as e:
        if e.flagname.startswith("config.") and _config_file(argv) is None:
            _fail(
                f"--{e.flagname} overrides a field of the config, but no config file was "
                "given and this experiment has no default: pass --config=configs/<name>.py "
                "before it"
            )
        _fail(f"{e}; pass --helpfull to see the flags")
    except flags.Error as e:
        _fail(f"{e}; pass --helpfull to see the flags")
    except CONFIG_ERRORS as e:
        _config_error(e, argv, _default_config_file(flag_values), _EXTEND.get(id(flag_values)))
    return []  # not reached


def _default_config_file(flag_values: flags.FlagValues) -> str | None:
    """The config file the ``config`` flag read by default, if it read one (the flag raises
    ``UnparsedFlagError`` when it was given on the command line and not parsed yet)."""
    try:
        return flag_values["config"].config_filename
    except (KeyError, flags.Error):
        return None


_SHOW_CONFIG = flags.DEFINE_bool(
    "show_config", False, "Print the resolved config, one field a line with its meaning, and exit."
)
# Where the config fields are defined, each with its meaning in a comment on its line.
_FIELD_SOURCES = {
    "": "configs/common.py",
    "search": "configs/digits_sweep.py",
    "ensemble": "configs/digits_ensemble.py",
}


def field_docs(root: str = _ROOT) -> dict[str, str]:
    """{dotted path: the comment on its line} for the fields of ``_FIELD_SOURCES``: lines
    ``c.<name> = ...  # doc``, and ``"<name>": ...  # doc`` inside ``c.<section> = ...``
    (or, in the search and ensemble files, inside their block)."""
    docs = {}
    for section, path in _FIELD_SOURCES.items():
        with open(os.path.join(root, path)) as f:
            lines = f.read().splitlines()
        current = section
        for line in lines:
            opened = re.match(r"\s*c\.(\w+) = ml_collections\.ConfigDict", line)
            if opened and not section:
                current = opened.group(1)
            field = re.match(r'\s*(?:c\.(\w+) =|"(\w+)":) .*?  # (.*)$', line)
            if field:
                name = field.group(1) or field.group(2)
                where = name if field.group(1) else f"{current}.{name}" if current else name
                docs[where] = field.group(3)
    return docs


def describe_config(config: Any, docs: dict[str, str]) -> str:
    """The resolved config as ``path = value  # meaning`` lines."""
    flat = []

    def walk(tree, prefix):
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat.append((f"{prefix}{key}", value))

    walk(config.to_dict(), "")
    width = max(len(f"{p} = {v!r}") for p, v in flat)
    return "\n".join(
        (f"{p} = {v!r}".ljust(width) + f"  # {docs[p]}" if p in docs else f"{p} = {v!r}")
        for p, v in flat
    )


def _start_up() -> None:
    """Keeps JAX's probing for absent accelerators ("Unable to initialize backend 'tpu'")
    out of the log (a platform that fails for a real reason still raises), and keeps
    compiled programs in a persistent cache (``$SCORELAB_XLA_CACHE``, default
    ``~/.cache/scorelab/xla``; empty: none), so a rerun, a resume or the next sweep of the
    same shapes loads them instead of compiling again."""
    std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
    cache = os.environ.get(
        "SCORELAB_XLA_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "scorelab", "xla")
    )
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _program_name(main: Callable[..., Any]) -> str:
    """The dotted name of the experiment that defines ``main`` (``experiments.sweep``), as
    ``python -m`` names it or from its file's path."""
    module = sys.modules.get(main.__module__)
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name != "__main__":
        return spec.name
    path = os.path.abspath(getattr(module, "__file__", None) or sys.argv[0])
    return os.path.relpath(os.path.splitext(path)[0], _ROOT).replace(os.sep, ".")


def _join_processes(main: Callable[..., Any]) -> None:
    """Joins the multi-process run this process was launched as part of (if any), before
    anything touches a device; refuses (one line, exit 2) for an experiment that does not
    run multi-process yet. Processes other than 0 then log only warnings and errors."""
    try:
        if not distributed.requested():
            return
    except ValueError as e:  # SCORELAB_* variables half set
        _fail(str(e))
    name = _program_name(main)
    if name not in MULTI_PROCESS:
        _fail(
            f"{name} does not run multi-process yet; launch it as one process (unset "
            f"{distributed.ENV_NUM_PROCESSES} / run outside srun, or set "
            f"{distributed.ENV_NUM_PROCESSES}=1); multi-process: {', '.join(MULTI_PROCESS)}"
        )
    distributed.initialize()
    if not distributed.is_main():
        logging.set_verbosity(logging.WARNING)


def _raised_by_config(error: BaseException) -> bool:
    """Whether ``error`` was raised by a ConfigDict asked for a field it lacks."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "config_dict" in tb.tb_frame.f_code.co_filename


def _missing_section_message(error: BaseException, main: Callable[..., Any]) -> str:
    """The error for a config file written for another experiment (a training config given
    to a sweep: no ``search`` section)."""
    name = _program_name(main)
    given = _config_file(sys.argv) or _DEFAULT_CONFIG.get(id(flags.FLAGS))
    default = _DEFAULT_CONFIG.get(id(flags.FLAGS))
    example = f" (its default: --config={default})" if default else ""
    field = str(error).strip("\"'").split("'")[0]
    return (
        f"the config {given or ''} has no field {field!r}, which {name} reads: it is not a "
        f"config for {name}; pass --config= a config written for it{example}"
    )


def _guarded(main: Callable[[list[str]], Any], defer_signals: bool, argv: list[str]) -> Any:
    if _SHOW_CONFIG.value:
        print(describe_config(flags.FLAGS.config, field_docs()))
        return None
    _start_up()
    _join_processes(main)
    with interrupt.deferred() if defer_signals else contextlib.nullcontext():
        try:
            return main(argv)
        except interrupt.Interrupted as e:
            logging.warning(
                "%s at a safe point: everything finished is kept; run the same command "
                "again to resume",
                e,
            )
            distributed.exit_now(e.exit_status)
        except BAD_INPUT as e:
            _fail(str(e))
        except (AttributeError, KeyError) as e:
            if not _raised_by_config(e):
                raise
            _fail(_missing_section_message(e, main))
        except jax.errors.JaxRuntimeError as e:
            if not distributed.joined():
                raise
            _fail(  # a collective failed: a peer died (a real bug's traceback is in its log)
                f"the multi-process run broke off ({str(e).strip().splitlines()[0][:300]}): "
                "another process died or was killed (see its log); everything finished is "
                "kept: run the same command again to resume",
                status=1,
            )


def run(main: Callable[[list[str]], Any], defer_signals: bool = True) -> None:
    """``app.run(main)`` for an experiment with a ``--config`` flag (ml_collections).

    ``defer_signals``: SIGINT/SIGTERM wait for the run's next ``interrupt.check()``; an
    experiment without safe points (one short computation) keeps Python's default."""
    app.run(functools.partial(_guarded, main, defer_signals), flags_parser=_parse_flags)
