"""Logging set-up for the entry points: readable lines on a terminal, or one JSON object per line.

Every record passes `RedactSecrets` on its way out, so no connection string's
password reaches a log line, whoever logged it (our code, psycopg, redis-py,
uvicorn, in any API worker process: `dict_config` is what uvicorn applies too).
"""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any

import orjson

from shared.errors import redact_secrets

# Attributes every LogRecord has; anything else came from `extra=` and is structured data.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the `extra=` fields at top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        return line + "".join(f" {k}={v}" for k, v in extras.items())


class RedactSecrets(logging.Filter):
    """Masks the password of every connection string in a record: message, extras, exception, stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_secrets(record.getMessage()), None
        for key, value in list(vars(record).items()):
            if key in _STANDARD or value is None:
                continue
            text = value if isinstance(value, str) else str(value)
            clean = redact_secrets(text)
            if clean != text:
                setattr(record, key, clean)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


def dict_config(level: str = "INFO", json: bool = False) -> dict[str, Any]:
    """The logging configuration of every process, for `logging.config.dictConfig` (and uvicorn's `log_config`).

    One stderr handler on the root logger, in the chosen format, behind
    `RedactSecrets`; uvicorn's loggers hand their records to it.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}},
        "formatters": {"line": {"()": JsonFormatter if json else TextFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "line",
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def configure(level: str = "INFO", json: bool = False) -> None:
    """Send every log record to stderr in the chosen format, passwords masked."""
    logging.config.dictConfig(dict_config(level, json))
