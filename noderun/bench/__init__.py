"""``noderun bench``: solver speed, evaluations, error and memory, side by side with torchdiffeq."""
