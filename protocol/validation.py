"""Shared by node and server: YAML files and pydantic errors as messages naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """The one strict base of both sides: unknown keys are errors and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_errors(exc: ValidationError, prefix: str, top: str = "(top)",
                 first_only: bool = True) -> str:
    """`PREFIX field a.b: msg` for the first error (or one line per error)."""
    errors = exc.errors()[:1] if first_only else exc.errors()
    return "\n".join(f"{prefix} field {'.'.join(str(p) for p in err['loc']) or top}: "
                     f"{err['msg']}" for err in errors)


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """The parsed YAML document at path; `error` naming the file when unreadable or not YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}): {exc.reason}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
