"""The writes several routers share: alert actions, silences and the node command buttons."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import HTTPException
from pydantic import Field
from sqlalchemy.orm import Session

from protocol.topics import Topics
from protocol.validation import StrictModel
from server.access.scope import Scope
from server.alerting import alerts
from server.api.deps import ServerParts, require
from server.core.db import Alert, CommandRow, Node, Pond, Silence
from server.link import commands

# What the buttons send, and how long each command may wait for the node.
BUTTONS: dict[str, int] = {"snapshot": 300, "selftest": 300, "horn_test": 120, "enrol": 600,
                           "restart": 120}


class AckAction(StrictModel):
    """An action taken through a link or the API."""

    action: Literal["ack", "on_scene", "resolve"] = Field(description="ack, on_scene or resolve.")
    outcome: Literal["real", "false_alarm", "test"] | None = Field(
        None, description="Required with resolve.")


def apply_action(svc: ServerParts, s: Session, alert: Alert, body: AckAction, by: str) -> bool:
    """Apply an action and commit; 422 when it does not fit."""
    try:
        changed = alerts.act(s, alert, body.action, by, svc.clock.now(), body.outcome,
                             svc.cfg.escalation.policy(alert.policy).on_scene_timeout_s)
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


def send_command(svc: ServerParts, s: Session, node_id: str, cmd: str, by: str) -> CommandRow:
    """Send one of the button commands to a node (caller checked scope; commits)."""
    if cmd not in BUTTONS:
        raise HTTPException(422, f"unknown command {cmd!r}; one of {', '.join(BUTTONS)}")
    client = svc.ingest.client if svc.ingest else None
    topics = svc.ingest.topics if svc.ingest else Topics(svc.cfg.mqtt.topic_prefix)
    try:
        row = commands.send(s, client, topics, node_id, cmd, {}, BUTTONS[cmd], by,
                            svc.clock.now())
    except commands.CommandError as exc:
        raise HTTPException(503, f"指令未发出 (command not sent): {exc}") from exc
    s.commit()
    return row
