"""Networks. Models know ``noderun.odeint`` and nothing of the runner."""

from .ode_block import ODEBlock, SolverSettings

__all__ = ["ODEBlock", "SolverSettings"]
