"""Explicit Runge–Kutta solvers: methods as data, one step, one loop."""
