"""Logging: JSON lines when not on a terminal, text on one; every record passes the redactor."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from collector.http import REDACT


class _RedactingFormatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        message = REDACT(record.getMessage())
        if record.exc_info:
            message += "\n" + REDACT(self.formatException(record.exc_info))
        if not self.as_json:
            ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return f"{ts} {record.levelname:<7} {record.name}: {message}"
        return json.dumps(
            {
                "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
            }
        )


def setup_logging(fmt: str = "auto", level: int = logging.INFO) -> None:
    """``auto`` = text on a terminal, JSON otherwise (README, Command line)."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "apscheduler", "github", "msrest", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
