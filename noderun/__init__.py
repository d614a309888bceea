"""noderun: Neural ODE solvers with adjoint and checkpoint gradients, and an experiment runner."""

from .dense import DenseSolution, odeint_dense
from .errors import SolverError
from .event import odeint_event
from .odeint import GRAD_MODES, odeint, odeint_adjoint, solve
from .solvers.methods import ADAPTIVE, ALIASES, FIXED_STEP, IMPLICIT, METHODS, STIFF
from .solvers.options import SettingError
from .solvers.settings import SolverSettings
from .solvers.stats import SolveStats

__version__ = "0.1.0"

__all__ = [
    "ADAPTIVE",
    "ALIASES",
    "DenseSolution",
    "FIXED_STEP",
    "GRAD_MODES",
    "IMPLICIT",
    "METHODS",
    "SettingError",
    "SolveStats",
    "SolverError",
    "SolverSettings",
    "STIFF",
    "__version__",
    "odeint",
    "odeint_adjoint",
    "odeint_dense",
    "odeint_event",
    "solve",
]
