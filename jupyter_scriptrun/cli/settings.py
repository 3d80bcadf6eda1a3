"""The settings as command-line options: one per setting, from its declaration, given
before the command (``scriptrun --broker-url redis://… run NAME``)."""

from __future__ import annotations

import argparse
import os


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per setting, from its declaration (before the command: ``scriptrun
    --broker-url redis://… run NAME``); each stands for its SCRIPTRUN_* variable."""
    from jupyter_scriptrun.config import declared

    group = parser.add_argument_group(
        "settings", "each overrides its SCRIPTRUN_* variable for this command"
    )
    for name, (variable, _, help) in declared().items():
        group.add_argument(
            _option(variable),
            dest=f"setting:{name}",
            metavar="VALUE",
            help=f"{help} ({variable})".replace("%", "%%"),
        )


def unrecognized(extra: list[str], command: str) -> str:
    """The error for arguments the command does not take: a setting's option given after
    the command is named, with where it goes."""
    from jupyter_scriptrun.config import declared

    settings = {_option(variable) for variable, _, _ in declared().values()}
    misplaced = [a.split("=")[0] for a in extra if a.split("=")[0] in settings]
    if misplaced:
        return (
            f"{', '.join(misplaced)}: a setting goes before the command "
            f"(scriptrun {misplaced[0]} VALUE {command} …)"
        )
    return f"unrecognized arguments: {' '.join(extra)}"


def _option(variable: str) -> str:
    """The command-line option of a setting: SCRIPTRUN_KILL_GRACE → ``--kill-grace``."""
    return "--" + variable.removeprefix("SCRIPTRUN_").lower().replace("_", "-")


def apply_setting_options(args: argparse.Namespace) -> None:
    """Put the setting options into the environment, where the settings, this process's
    client and a worker started from here read them (checked like the variables)."""
    from jupyter_scriptrun.config import Settings, declared, set_settings
    from jupyter_scriptrun.exceptions import ConfigurationError

    given, problems = {}, []
    for name, (variable, kind, _) in declared().items():
        if (value := getattr(args, f"setting:{name}", None)) is None:
            continue
        given[variable] = value
        try:
            kind.parse(value.strip())
        except ValueError as exc:  # named as typed, not as the variable it stands for
            problems.append(f"{_option(variable)} {value!r}: {exc}")
    if problems:
        raise ConfigurationError("; ".join(problems))
    if given:
        settings = Settings.from_env({**os.environ, **given})  # ConfigurationError if wrong
        os.environ.update(given)
        set_settings(settings)
