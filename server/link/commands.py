"""Commands to nodes: an id, an expiry (payload and MQTT message expiry), the answer stored."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.orm import Session

from protocol.commands import CommandArgsError, check_args
from protocol.limits import MAX_CMD_BYTES
from protocol.payloads import Command, CommandResult, encode
from protocol.topics import Topics
from server.core.db import CommandRow
from server.core.errors import ServerError

log = logging.getLogger(__name__)


class CommandError(ServerError, ValueError):
    """A command that cannot be sent."""


class CommandTooLarge(CommandError):
    """A command longer, encoded, than the wire contract's MAX_CMD_BYTES (nodes drop those)."""


class CommandInvalid(CommandError):
    """A command name no node answers, or arguments outside protocol.commands' schema."""


def send(s: Session, client: mqtt.Client | None, topics: Topics, node_id: str, cmd: str,
         args: dict[str, Any], ttl_s: int, by: str, now: datetime) -> CommandRow:
    """Check it against protocol.commands' schema, record it, then publish it at QoS 1 with
    message expiry (caller commits). Who may send which name is the caller's check."""
    if not 1 <= ttl_s <= 7 * 86400:
        raise CommandError("ttl_s must be between 1 s and 7 days")
    try:
        args = check_args(cmd, args)
    except CommandArgsError as exc:
        raise CommandInvalid(str(exc)) from exc
    c = Command(id=uuid.uuid4().hex, cmd=cmd, args=args, expires_at=now + timedelta(seconds=ttl_s))
    payload = encode(c)
    if len(payload) > MAX_CMD_BYTES:
        raise CommandTooLarge(f"command of {len(payload)} bytes is over the {MAX_CMD_BYTES}-byte "
                              "limit of the wire contract")
    if client is None or not client.is_connected():
        raise CommandError("not connected to the broker")
    row = CommandRow(id=c.id, node_id=node_id, cmd=cmd, args=args, created_at=now,
                     expires_at=c.expires_at, created_by=by)
    s.add(row)
    s.flush()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = ttl_s
    info = client.publish(topics.cmd(node_id), payload, qos=1, properties=props)
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        raise CommandError(f"publish failed: {mqtt.error_string(info.rc)}")
    log.info("command %s %r -> %s (expires %s)", c.id, cmd, node_id, c.expires_at.isoformat())
    return row


def record_result(s: Session, node_id: str, res: CommandResult, now: datetime) -> bool:
    """Store a node's answer to one of our commands; False for unknown or foreign ids."""
    row = s.get(CommandRow, res.id)
    if row is None or row.node_id != node_id:
        log.warning("result for unknown command %s from %s", res.id, node_id)
        return False
    if row.result_at is None:
        row.ok, row.result, row.result_at = res.ok, res.result, now
    return True
