#!/usr/bin/env bash
# Installs a PondWatch pond node on Raspberry Pi OS (Bookworm, 64-bit) from this source tree.
#   sudo bash systemd/install-node.sh --config node.yaml [--password-file FILE] [--no-start]
#        [--runtime ncnn|onnxruntime|ultralytics]   # default ncnn: no torch at run time
#   sudo bash systemd/install-node.sh --dry-run --config node.yaml   # print the steps only
# Idempotent: run it again to upgrade the code or replace the config; state in
# /var/lib/pondwatch (outbox, references, seen commands) is kept.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/opt/pondwatch
etc=/etc/pondwatch
state=/var/lib/pondwatch
credstore=/etc/credstore
config="" password_file="" start=1 dry=0 runtime=ncnn

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case "$1" in
    --config) config="${2:?--config needs a file}"; shift 2 ;;
    --password-file) password_file="${2:?--password-file needs a file}"; shift 2 ;;
    --no-start) start=0; shift ;;
    --runtime) runtime="${2:?--runtime needs ncnn, onnxruntime or ultralytics}"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done
[ -n "$config" ] || { echo "--config node.yaml is required" >&2; usage; }
[ -f "$config" ] || { echo "config $config not found" >&2; exit 2; }
case "$runtime" in
  ncnn|onnxruntime|ultralytics) ;;
  *) echo "--runtime must be ncnn, onnxruntime or ultralytics, not $runtime" >&2; exit 2 ;;
esac
[ -z "$password_file" ] || [ -f "$password_file" ] || {
  echo "password file $password_file not found" >&2; exit 2; }

run() { if ((dry)); then echo "+ $*"; else "$@"; fi; }
step() { echo "==> $*"; }
if ((!dry)) && [ "$(id -u)" -ne 0 ]; then echo "run as root (sudo)" >&2; exit 1; fi

step "Debian packages"
run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  python3-venv python3-pip python3-picamera2 python3-libcamera python3-lgpio alsa-utils \
  libgl1 libglib2.0-0 ca-certificates systemd-timesyncd

step "user pondwatch (groups gpio video audio dialout systemd-journal)"
for g in gpio video audio dialout; do run groupadd -f --system "$g"; done
if ! id pondwatch >/dev/null 2>&1; then
  run useradd --system --home-dir "$state" --no-create-home --shell /usr/sbin/nologin \
    --user-group pondwatch
fi
run usermod -a -G gpio,video,audio,dialout,systemd-journal pondwatch

step "code in $prefix"
run install -d -m 0755 "$prefix"
run tar -C "$src" --exclude=.git --exclude=.venv --exclude=build --exclude=var \
  --exclude='__pycache__' -cf "$prefix/src.tar" .
run tar -C "$prefix" -xf "$prefix/src.tar"
run rm -f "$prefix/src.tar"
# picamera2, libcamera and lgpio (gpiozero on a Pi 5) come from apt: the venv sees them.
[ -x "$prefix/.venv/bin/python" ] || run python3 -m venv --system-site-packages "$prefix/.venv"
run "$prefix/.venv/bin/pip" install -q --upgrade pip
case "$(uname -m)" in
  aarch64) run "$prefix/.venv/bin/pip" install -q torch==2.9.1 torchvision==0.24.1 ;;
esac
run "$prefix/.venv/bin/pip" install -q "$prefix[edge]"
if ! ls "$prefix"/models/*.pt >/dev/null 2>&1; then
  run "$prefix/.venv/bin/python" "$prefix/scripts/fetch_model.py" --model default
fi

step "config in $etc, state in $state"
run install -d -m 0750 -o root -g pondwatch "$etc"
run install -m 0640 -o root -g pondwatch "$config" "$etc/node.yaml"
run install -d -m 0750 -o pondwatch -g pondwatch "$state" "$state/refs" "$state/ultralytics"

# The node runs an export on onnxruntime or ncnn, which never load torch (about 400 MB instead
# of 1.2 GB, docs/benchmarks.md); torch stays installed for exporting and training. The export
# is made here from the trusted .pt, with its trust record (edge/trust.py), and the installed
# config points at it.
step "model run time: $runtime"
if [ "$runtime" != ultralytics ]; then
  fmt=ncnn; needs="pnnx==20260526"
  [ "$runtime" = ncnn ] || { fmt=onnx; needs="onnx onnxslim"; }
  # shellcheck disable=SC2086  # $needs is a list of requirements
  run "$prefix/.venv/bin/pip" install -q $needs
  pick='import sys; from edge.config import load_config; from edge.model.store import describe
m = load_config(sys.argv[1]).model
print(describe(m.path).name or sys.exit(f"{m.path} is not a model of the manifest"))'
  if ((dry)); then name="NAME"; echo "+ (the manifest name of the config's model.path)"
  else name="$("$prefix/.venv/bin/python" -c "$pick" "$etc/node.yaml")"; fi
  run env YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$state/ultralytics" "$prefix/.venv/bin/pondwatch-edge" \
    model --dir "$prefix/models" export "$name" --format "$fmt"
  out="$prefix/models/$name.onnx"; [ "$fmt" = onnx ] || out="$prefix/models/${name}_ncnn_model"
  set_model='import sys, yaml; p = sys.argv[1]; raw = yaml.safe_load(open(p))
raw.setdefault("model", {}).update(path=sys.argv[2], runtime=sys.argv[3])
open(p, "w").write(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))'
  run "$prefix/.venv/bin/python" -c "$set_model" "$etc/node.yaml" "$out" "$runtime"
fi
run env YOLO_OFFLINE=1 "$prefix/.venv/bin/pondwatch-edge" run "$etc/node.yaml" --check-config

step "broker password as a systemd credential"
run install -d -m 0700 "$credstore"
if [ -n "$password_file" ]; then
  run install -m 0600 -o root -g root "$password_file" "$credstore/pondwatch-mqtt-password"
elif [ ! -f "$credstore/pondwatch-mqtt-password" ]; then
  if ((dry)); then
    echo "+ (ask for the broker password) > $credstore/pondwatch-mqtt-password"
  else
    read -r -s -p "broker password for this node (from add-node.sh): " pw; echo
    umask 077; printf '%s\n' "$pw" > "$credstore/pondwatch-mqtt-password"
  fi
fi

step "clock (no RTC on a Pi): NTP on; hardware watchdog reboots a hung system"
run timedatectl set-ntp true
run install -d -m 0755 /etc/systemd/system.conf.d
if ((dry)); then
  echo "+ write /etc/systemd/system.conf.d/pondwatch-watchdog.conf (RuntimeWatchdogSec=15)"
else
  printf '[Manager]\nRuntimeWatchdogSec=15\nRebootWatchdogSec=2min\n' \
    > /etc/systemd/system.conf.d/pondwatch-watchdog.conf
fi

step "systemd unit"
run install -m 0644 "$src/systemd/pondwatch-edge.service" /etc/systemd/system/
run systemctl daemon-reload
run systemctl stop pondwatch-edge.service || true

step "diagnosis before start, as the service user (GPIO and camera are free now)"
creds="$(mktemp -d)"
trap 'rm -rf "$creds"' EXIT
run chown pondwatch "$creds"
if [ -f "$credstore/pondwatch-mqtt-password" ] || ((dry)); then
  run install -m 0400 -o pondwatch "$credstore/pondwatch-mqtt-password" "$creds/mqtt-password"
fi
if ! run runuser -u pondwatch -- env YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$state/ultralytics" \
    CREDENTIALS_DIRECTORY="$creds" "$prefix/.venv/bin/pondwatch-edge" diag "$etc/node.yaml"
then
  echo "!! diag found problems (see above); fix them, then: pondwatch-edge diag $etc/node.yaml"
fi

if ((start)); then
  step "start"
  run systemctl enable --now pondwatch-edge.service
  run systemctl --no-pager --lines=5 status pondwatch-edge.service || true
fi
step "done: logs with  journalctl -u pondwatch-edge -f"
