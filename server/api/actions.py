"""The writes several routers share: alert actions, silences and the node command buttons."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import HTTPException
from pydantic import Field
from sqlalchemy.orm import Session

from protocol.commands import COMMANDS, OPERATOR_COMMANDS
from protocol.topics import Topics
from protocol.validation import StrictModel
from server.access.scope import Scope
from server.alerting import alerts
from server.api.deps import ServerParts, require
from server.core.db import Alert, CommandRow, Node, Pond, Silence
from server.link import commands

# What the buttons send (always with the schema's default arguments), and how long each
# command may wait for the node. `logs` is a server command: the button is the server's own
# code path for it (50 lines), the JSON API refuses it.
BUTTONS: dict[str, int] = {"snapshot": 300, "selftest": 300, "horn_test": 120, "enrol": 600,
                           "restart": 120, "logs": 120}
SERVER_BUTTONS = frozenset({"logs"})
# Command names each role may send (buttons, JSON API); the rest of protocol.commands'
# (model_update, logs) only the server's own code paths send.
ROLE_COMMANDS: dict[str, frozenset[str]] = {"technician": OPERATOR_COMMANDS,
                                            "admin": OPERATOR_COMMANDS}


def require_command(scope: Scope, cmd: str) -> None:
    """422 for a name no node answers; 403 for one this role may not send."""
    if cmd not in COMMANDS:
        raise HTTPException(422, f"unknown command {cmd[:40]!r}; one of "
                            f"{', '.join(sorted(ROLE_COMMANDS.get(scope.role, ())))}")
    require(cmd in ROLE_COMMANDS.get(scope.role, frozenset()),
            f"指令 {cmd} 只由服务器发出 (the {cmd} command is not for your role)")


class AckAction(StrictModel):
    """An action taken through a link or the API."""

    action: Literal["ack", "on_scene", "resolve"] = Field(description="ack, on_scene or resolve.")
    outcome: Literal["real", "false_alarm", "test"] | None = Field(
        None, description="Required with resolve.")


def apply_action(svc: ServerParts, s: Session, alert: Alert, body: AckAction, by: str) -> bool:
    """Apply an action and commit; 422 when it does not fit."""
    try:
        changed = alerts.act(s, alert, body.action, by, svc.clock.now(), body.outcome,
                             svc.cfg.escalation.policy(alert.policy).on_scene_timeout_s,
                             svc.cfg.false_alarm_budget)
    except alerts.AlertError as exc:
        raise HTTPException(422, str(exc)) from exc
    s.commit()
    return changed


def add_silence(svc: ServerParts, s: Session, scope: Scope, pond_id: str | None,
                node_id: str | None, minutes: float, reason: str,
                starts: datetime | None = None) -> Silence:
    """Create a silence (caller commits): technicians and admins, ponds/nodes in scope.

    403 for other roles; 422 on bad input, with ponds and nodes outside scope reported
    exactly like unknown ones.
    """
    require(scope.may_command_nodes)
    if not pond_id and not node_id:
        raise HTTPException(422, "需要指定池塘或设备 (pond_id or node_id required)")
    if pond_id and (not scope.sees_pond(pond_id) or s.get(Pond, pond_id) is None):
        raise HTTPException(422, f"unknown pond {pond_id!r}")
    if node_id and (not scope.sees_node(node_id) or s.get(Node, node_id) is None):
        raise HTTPException(422, f"unknown node {node_id!r}")
    if not 0 < minutes <= 14 * 24 * 60:
        raise HTTPException(422, "minutes must be between 0 and 20160")
    start = starts or svc.clock.now()
    row = Silence(pond_id=pond_id or None, node_id=node_id or None, starts=start,
                  ends=start + timedelta(minutes=minutes), reason=reason[:500],
                  created_by=scope.username)
    s.add(row)
    return row


def send_command(svc: ServerParts, s: Session, node_id: str, cmd: str,
                 scope: Scope) -> CommandRow:
    """Send one of the button commands to a node (caller checked the node is in scope;
    the role is checked here; commits)."""
    if cmd not in BUTTONS:
        raise HTTPException(422, f"unknown command {cmd[:40]!r}; one of {', '.join(BUTTONS)}")
    if cmd in SERVER_BUTTONS:
        require(scope.may_command_nodes)
    else:
        require_command(scope, cmd)
    client = svc.ingest.client if svc.ingest else None
    topics = svc.ingest.topics if svc.ingest else Topics(svc.cfg.mqtt.topic_prefix)
    try:
        row = commands.send(s, client, topics, node_id, cmd, {}, BUTTONS[cmd], scope.username,
                            svc.clock.now())
    except commands.CommandError as exc:
        raise HTTPException(503, f"指令未发出 (command not sent): {exc}") from exc
    s.commit()
    return row
