"""Small nonlinear test problems, each as a torch right-hand side and a NumPy one for SciPy."""

import numpy as np
import torch


def van_der_pol(t, y, mu=1.0):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, mu * (1 - x**2) * v - x], dim=-1)


def lotka_volterra(t, y):
    prey, predator = y[..., 0], y[..., 1]
    return torch.stack([1.5 * prey - prey * predator, -3.0 * predator + prey * predator], dim=-1)


def seasonal_logistic(t, y):
    return (1 + 0.5 * torch.sin(2 * t)) * y * (1 - y)


# y' = A y with a known exact solution: a damped rotation, time-dependent through nothing but y (the orders
# of convergence of tests/test_order.py, test_implicit.py and test_adams.py).
ROTATION = torch.tensor([[-0.3, 2.0], [-2.0, -0.3]], dtype=torch.float64)
ROTATION_Y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)


def rotation(t, y):
    return ROTATION @ y


def rotation_exact(t):
    return torch.linalg.matrix_exp(ROTATION * t) @ ROTATION_Y0


def observed_order(hs, errors, floor=1e-13):
    """The slope of log(error) against log(h), over the errors above ``floor`` (clear of round-off)."""
    hs, errors = np.asarray(hs), np.asarray(errors)
    keep = errors > floor
    assert keep.sum() >= 3, errors
    return np.polyfit(np.log(hs[keep]), np.log(errors[keep]), 1)[0]


PROBLEMS = {
    "van_der_pol": (van_der_pol, [2.0, 0.0], 10.0),
    "lotka_volterra": (lotka_volterra, [1.0, 1.0], 10.0),
    "seasonal_logistic": (seasonal_logistic, [0.1, 0.5, 1.5], 6.0),
}


def numpy_rhs(func):
    def f(t, y):
        return func(torch.tensor(t, dtype=torch.float64), torch.from_numpy(y)).numpy()

    return f


def reference_solution(name, times):
    """SciPy's DOP853 at very tight tolerance."""
    from scipy.integrate import solve_ivp

    func, y0, _ = PROBLEMS[name]
    sol = solve_ivp(
        numpy_rhs(func), (times[0], times[-1]), np.array(y0), method="DOP853", t_eval=times, rtol=1e-13, atol=1e-13
    )
    assert sol.success
    return torch.from_numpy(sol.y.T.copy())
