#!/usr/bin/env bash
# Adds (or re-keys) a broker account and prints its password once.
#   sudo bash systemd/mosquitto/add-node.sh heyuan-01           # a node: the user is its id
#   sudo bash systemd/mosquitto/add-node.sh --server            # the server: pondwatch-server
#   sudo bash systemd/mosquitto/add-node.sh --server replica-b  # a replica: pondwatch-server-replica-b
# Node ids `pondwatch` and `pondwatch-*` are reserved for the server's accounts. The password
# never appears on a command line (mosquitto_passwd reads it on stdin) and is written to no
# file in clear; the broker's password file holds hashes and is created 0640 root:mosquitto.
set -euo pipefail
umask 077
passwd_file="${PONDWATCH_PASSWD_FILE:-/etc/mosquitto/pondwatch.passwd}"
acl_file="${PONDWATCH_ACL_FILE:-/etc/mosquitto/pondwatch.acl}"
prefix="${PONDWATCH_TOPIC_PREFIX:-pondwatch/v1}"
id_re='^[a-z0-9][a-z0-9-]{0,63}$'

if [ "${1:-}" = "--server" ]; then
  replica="${2:-}"
  [ -z "$replica" ] || [[ "$replica" =~ $id_re ]] || {
    echo "bad replica name: $replica" >&2; exit 2; }
  user="pondwatch-server${replica:+-$replica}"
  # Each server account reads and writes the whole prefix (nodes get the %u patterns).
  if [ -f "$acl_file" ] && ! grep -qx "user $user" "$acl_file"; then
    printf '\nuser %s\ntopic readwrite %s/#\n' "$user" "$prefix" >> "$acl_file"
  fi
else
  user="${1:?usage: add-node.sh NODE_ID | --server [REPLICA]}"
  [[ "$user" =~ $id_re ]] || { echo "bad node id: $user" >&2; exit 2; }
  if [ "$user" = pondwatch ] || [[ "$user" == pondwatch-* ]]; then
    echo "node id $user is reserved: pondwatch and pondwatch-* are the server's accounts" \
         "(use --server for those)" >&2
    exit 2
  fi
fi

password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | cut -c1-24)"
[ -f "$passwd_file" ] || install -m 0640 -o root -g mosquitto /dev/null "$passwd_file" \
  2>/dev/null || install -m 0600 /dev/null "$passwd_file"
# printf is a shell builtin: the password goes down the pipe, not into any process's argv.
printf '%s\n%s\n' "$password" "$password" | mosquitto_passwd "$passwd_file" "$user" >/dev/null
systemctl reload mosquitto 2>/dev/null || true
echo "$user password: $password   (put it in /etc/credstore/pondwatch-mqtt-password on the node," \
     "or PONDWATCH_MQTT_PASSWORD of the server replica)"
