"""The commands a node answers: each name's argument schema, with types and ranges, and who
may send it. The server checks a command before sending it and the node again before running
it, both with check_args."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from protocol.validation import StrictModel, field_errors


class CommandArgsError(ValueError):
    """A command name no node answers, or arguments outside its schema; names the field."""


class NoArgs(StrictModel):
    """snapshot, restart: no arguments."""


class SelftestArgs(StrictModel):
    """selftest: the diag checks."""

    full: bool = Field(False, description="Also camera and GPIO (the service holds them).")


class HornTestArgs(StrictModel):
    """horn_test: horn and light briefly."""

    seconds: float = Field(2.0, gt=0, le=10, description="How long the horn sounds.")


class EnrolArgs(StrictModel):
    """enrol: re-enrol the rescue kit from the live view."""

    frames: int = Field(9, ge=3, le=15, description="Frames whose median is the reference.")
    every_s: float = Field(1.0, ge=0, le=10, description="Seconds between frames.")


class LogsArgs(StrictModel):
    """logs: the node's last log lines."""

    lines: int = Field(50, ge=1, le=500, description="How many lines.")


class ModelUpdateArgs(StrictModel):
    """model_update: fetch, check and switch to a model (the node checks it further)."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Model name.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the file.")
    size: int = Field(gt=0, le=2**31, description="Bytes to download.")
    url: str = Field(min_length=1, max_length=2048, description="Download URL on the server.")
    labels: dict[str, list[str]] | None = Field(None, description="Meaning -> class names.")
    token: str | None = Field(None, max_length=256, description="Download token.")
    signature: Any = Field(None, description="The signer's document (checked on the node).")


Sender = Literal["operator", "server"]
# name -> (argument schema, who sends it): "operator" commands are what technicians and
# admins may send (buttons, JSON API); "server" ones only the server's own code paths.
COMMANDS: dict[str, tuple[type[StrictModel], Sender]] = {
    "snapshot": (NoArgs, "operator"),
    "selftest": (SelftestArgs, "operator"),
    "horn_test": (HornTestArgs, "operator"),
    "enrol": (EnrolArgs, "operator"),
    "restart": (NoArgs, "operator"),
    "logs": (LogsArgs, "server"),
    "model_update": (ModelUpdateArgs, "server"),
}
OPERATOR_COMMANDS = frozenset(n for n, (_, who) in COMMANDS.items() if who == "operator")


def check_args(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments of cmd, checked against its schema (the ones given, as their declared
    types); CommandArgsError for an unknown name or a bad argument."""
    if cmd not in COMMANDS:
        raise CommandArgsError(f"unknown command {cmd[:40]!r}; one of {', '.join(COMMANDS)}")
    schema = COMMANDS[cmd][0]
    try:
        return schema.model_validate(args).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise CommandArgsError(field_errors(exc, cmd, top="args")) from exc
