"""protocol.commands: each command's argument schema; unknown names and arguments, wrong types
and values out of range are refused with a CommandArgsError naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.commands import COMMANDS, OPERATOR_COMMANDS, CommandArgsError, check_args

SHA = "ab" * 32


def test_who_may_send_what_is_the_design() -> None:
    """People send the operator commands; model_update and logs come only from the server."""
    assert set(COMMANDS) == {"snapshot", "selftest", "horn_test", "enrol", "restart", "logs",
                             "model_update"}
    assert set(OPERATOR_COMMANDS) == {"snapshot", "selftest", "horn_test", "enrol", "restart"}


@pytest.mark.parametrize("cmd", ["snapshot", "selftest", "horn_test", "enrol", "restart", "logs"])
def test_commands_run_with_their_defaults(cmd: str) -> None:
    """No arguments given: valid, and nothing is filled in (the node applies its defaults)."""
    assert check_args(cmd, {}) == {}


@pytest.mark.parametrize(("cmd", "args"), [
    ("selftest", {"full": True}),
    ("horn_test", {"seconds": 10.0}),
    ("horn_test", {"seconds": 0.1}),
    ("enrol", {"frames": 3, "every_s": 0.0}),
    ("enrol", {"frames": 15, "every_s": 10.0}),
    ("logs", {"lines": 1}),
    ("logs", {"lines": 500}),
    ("model_update", {"name": "pond-person-v2.pt", "sha256": SHA, "size": 1,
                      "url": "https://server/node-api/models/" + SHA, "token": "t" * 256,
                      "labels": {"person": ["person"]}, "signature": {"format": "x"}}),
])
def test_arguments_at_their_bounds_are_accepted(cmd: str, args: dict[str, Any]) -> None:
    assert check_args(cmd, args) == args


@pytest.mark.parametrize(("cmd", "args", "message"), [
    ("snapshot", {"x": 1}, "snapshot field x: Extra inputs are not permitted"),
    ("restart", {"now": True}, "restart field now: Extra inputs are not permitted"),
    ("horn_test", {"volume": 3}, "horn_test field volume: Extra inputs are not permitted"),
    ("horn_test", {"seconds": 0}, "horn_test field seconds: Input should be greater than 0"),
    ("horn_test", {"seconds": 10.5}, "horn_test field seconds: Input should be less than or "
                                     "equal to 10"),
    ("horn_test", {"seconds": "loud"}, "horn_test field seconds: Input should be a valid number"),
    ("selftest", {"full": [1]}, "selftest field full: Input should be a valid boolean"),
    ("enrol", {"frames": 2}, "enrol field frames: Input should be greater than or equal to 3"),
    ("enrol", {"frames": 16}, "enrol field frames: Input should be less than or equal to 15"),
    ("enrol", {"frames": 9.5}, "enrol field frames: Input should be a valid integer"),
    ("enrol", {"every_s": -1}, "enrol field every_s: Input should be greater than or equal to 0"),
    ("logs", {"lines": 0}, "logs field lines: Input should be greater than or equal to 1"),
    ("logs", {"lines": 501}, "logs field lines: Input should be less than or equal to 500"),
    ("logs", {"lines": None}, "logs field lines: Input should be a valid integer"),
    ("model_update", {}, "model_update field name: Field required"),
    ("model_update", {"name": "../../etc/passwd", "sha256": SHA, "size": 1, "url": "u"},
     "model_update field name: String should match pattern"),
    ("model_update", {"name": "m", "sha256": SHA.upper(), "size": 1, "url": "u"},
     "model_update field sha256: String should match pattern"),
    ("model_update", {"name": "m", "sha256": SHA, "size": 0, "url": "u"},
     "model_update field size: Input should be greater than 0"),
    ("model_update", {"name": "m", "sha256": SHA, "size": 2**31 + 1, "url": "u"},
     "model_update field size: Input should be less than or equal to 2147483648"),
    ("model_update", {"name": "m", "sha256": SHA, "size": 1, "url": ""},
     "model_update field url: String should have at least 1 character"),
    ("model_update", {"name": "m", "sha256": SHA, "size": 1, "url": "u", "token": "t" * 257},
     "model_update field token: String should have at most 256 characters"),
    ("model_update", {"name": "m", "sha256": SHA, "size": 1, "url": "u", "labels": ["person"]},
     "model_update field labels: Input should be a valid dictionary"),
])
def test_bad_arguments_are_refused_naming_the_field(cmd: str, args: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(CommandArgsError) as err:
        check_args(cmd, args)
    assert str(err.value).startswith(message), err.value


def test_an_unknown_command_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(CommandArgsError) as err:
        check_args("format_disk", {})
    assert str(err.value) == ("unknown command 'format_disk'; one of snapshot, selftest, "
                              "horn_test, enrol, restart, logs, model_update")


def test_an_unknown_command_name_is_cut_in_the_message() -> None:
    """A name as long as a whole command payload is quoted only 40 characters long."""
    with pytest.raises(CommandArgsError) as err:
        check_args("x" * 10_000, {})
    assert repr("x" * 40) in str(err.value) and "x" * 41 not in str(err.value)


def test_command_args_error_is_a_value_error() -> None:
    assert issubclass(CommandArgsError, ValueError)
