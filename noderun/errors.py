"""Errors noderun raises for failures a user can act on."""


class SolverError(RuntimeError):
    """An ODE solve could not finish: step budget exhausted, step size underflow, or a non-finite state.

    ``nonfinite`` is true when the state or its derivative became NaN or infinite (the model diverged).
    """

    def __init__(self, message: str, nonfinite: bool = False):
        super().__init__(message)
        self.nonfinite = nonfinite


class ConfigError(ValueError):
    """A config value or an input noderun cannot run with; the message names the key and the accepted values
    (``noderun train`` exits 2 with it)."""
