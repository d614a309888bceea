"""The Hydra plugins of the ``scale`` extra: a launcher or sweeper asked for on the command line whose
plugin (or the library it drives) is not installed is refused in one line saying how to install it."""

from __future__ import annotations

import importlib.util

INSTALL = 'pip install -e ".[scale]"'
JOBLIB = ("hydra_plugins.hydra_joblib_launcher", "joblib")
SUBMITIT = ("hydra_plugins.hydra_submitit_launcher", "submitit")
OPTUNA = ("hydra_plugins.hydra_optuna_sweeper", "optuna")
NEEDS = {  # `key=choice` on the command line: the modules it needs
    ("hydra/launcher", "joblib"): JOBLIB,
    ("hydra/launcher", "submitit_local"): SUBMITIT,
    ("hydra/launcher", "submitit_slurm"): SUBMITIT,
    ("hydra/sweeper", "optuna"): OPTUNA,
    ("hparams_search", "optuna"): OPTUNA,
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a module set to None in sys.modules
        return False


def missing_plugin(overrides: list[str]) -> str | None:
    """``None`` when every plugin the overrides ask for is installed; else the refusal, naming the
    override, the missing module and the install command."""
    for override in overrides:
        key, _, choice = override.lstrip("+~").partition("=")
        missing = [module for module in NEEDS.get((key, choice), ()) if not installed(module)]
        if missing:
            return f"{override}: {missing[0]} is not installed: {INSTALL}"
    return None
