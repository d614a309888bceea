"""Errors noderun raises for failures a user can act on."""


class SolverError(RuntimeError):
    """An ODE solve could not finish: step budget exhausted, step size underflow, or a non-finite state."""
