#!/usr/bin/env bash
# Adds (or re-keys) a node's broker account and prints the password once.
#   sudo bash systemd/mosquitto/add-node.sh heyuan-01
set -euo pipefail
node="$1"
[[ "$node" =~ ^[a-z0-9][a-z0-9-]{0,63}$ ]] || { echo "bad node id: $node" >&2; exit 2; }
passwd_file="${PONDWATCH_PASSWD_FILE:-/etc/mosquitto/pondwatch.passwd}"
password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | cut -c1-24)"
[ -f "$passwd_file" ] || install -m 0640 -o root -g mosquitto /dev/null "$passwd_file" 2>/dev/null || touch "$passwd_file"
mosquitto_passwd -b "$passwd_file" "$node" "$password"
systemctl reload mosquitto 2>/dev/null || true
echo "node $node password: $password   (put it in /etc/credstore/pondwatch-mqtt-password on the node)"
