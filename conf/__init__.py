"""noderun's Hydra configs, shipped inside the package as ``noderun.conf``."""
