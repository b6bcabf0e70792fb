#!/usr/bin/env bash
# Sets up a fresh Debian 12 / Raspberry Pi OS machine for PondWatch, then runs the demo or the tests.
#   bash scripts/setup.sh demo    -> server + private Mosquitto + node replaying the demo clip + page receiver
#   bash scripts/setup.sh test    -> the whole pytest suite (starts its own PostgreSQL)
# Creates or reuses .venv/ at the repo root. Needs root (or sudo) only to install Debian packages.
set -euo pipefail
mode="${1:-test}"; shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(python3-venv python3-pip python3-dev mosquitto mosquitto-clients chromium
              postgresql espeak-ng sox alsa-utils systemd ca-certificates openssl
              fonts-wqy-microhei)  # CJK font: Chinese renders in headless Chromium screenshots
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # the distribution's own broker service is not used: PondWatch starts private brokers
  "${sudo_cmd[@]}" systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.pondwatch-installed"
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv (first run takes a while)"
  # pip's own exit status decides; its noisy "... is ignored" lines are dropped (grep finding
  # no other line is not a failure)
  pip_install() {
    local what="$1" out rc=0; shift
    out="$(mktemp)"
    "$py" -m pip install -q "$@" >"$out" 2>&1 || rc=$?
    grep -v "is ignored" "$out" || true
    rm -f "$out"
    if ((rc)); then
      echo "setup: pip could not install $what (pip exit $rc; its messages are above)" >&2
      exit 1
    fi
  }
  pip_install "pip itself" --upgrade pip
  case "$(uname -m)" in
    aarch64) torch_pins=(torch==2.9.1 torchvision==0.24.1) ;;
    *)       torch_pins=(torch==2.14.1 torchvision==0.29.1) ;;
  esac
  pip_install "torch (${torch_pins[*]})" "${torch_pins[@]}"
  pip_install "PondWatch with its extras edge, server, test and bench" \
    -e ".[edge,server,test,bench]"
  "$py" -c "import torch, torchvision, ultralytics, cv2, paho.mqtt, fastapi, apprise, cryptography" \
    || { echo "setup: Python packages failed to install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

# Ultralytics: offline, no usage analytics, settings in the repo's var/
export YOLO_OFFLINE=1 YOLO_VERBOSE=False YOLO_CONFIG_DIR="$root/var/ultralytics"
mkdir -p "$YOLO_CONFIG_DIR"
"$py" - <<'PY' >/dev/null 2>&1 || true
from ultralytics import settings
settings.update({"sync": False})
PY

"$py" scripts/fetch_model.py --model "${PONDWATCH_MODEL:-default}"

case "$mode" in
  demo)
    exec "$py" scripts/demo.py "$@"
    ;;
  test)
    pg_dir=""
    cleanup() { [ -n "$pg_dir" ] && bash scripts/pg.sh stop "$pg_dir" >/dev/null 2>&1; true; }
    trap cleanup EXIT
    if [ -z "${PONDWATCH_TEST_PG_URL:-}" ] && [ -d /usr/lib/postgresql ]; then
      pg_dir="$(mktemp -d /tmp/pondwatch-pg.XXXXXX)"
      PONDWATCH_TEST_PG_URL="$(bash scripts/pg.sh start "$pg_dir")"
      export PONDWATCH_TEST_PG_URL
    fi
    set +e
    "$py" -m pytest "$@"
    rc=$?
    set -e
    exit $rc
    ;;
  *)
    echo "usage: bash scripts/setup.sh demo|test [args...]" >&2; exit 2 ;;
esac
