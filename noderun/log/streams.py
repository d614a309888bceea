"""Which stream a log record goes to: information on stdout, warnings and errors on stderr
(conf/hydra/job_logging/noderun.yaml sets the handlers up)."""

from __future__ import annotations

import logging


class BelowWarning(logging.Filter):
    """Lets through the records below WARNING: stdout's handler, while stderr's takes the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING
