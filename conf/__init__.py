"""noderun's Hydra configs, shipped inside the package as ``noderun.conf``. Importing it stores the
schemas of the configs (``schema.py``) in Hydra's ConfigStore: do so before composing (``noderun train``
and ``tests/conftest.py`` do)."""

from .schema import register

register()
