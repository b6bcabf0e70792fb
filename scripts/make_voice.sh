#!/bin/sh
# Regenerate edge/warning/assets/warning_zh.wav, the spoken Mandarin pond warning, with espeak-ng and sox.
set -eu
TEXT="${1:-危险水域，请勿靠近}"
OUT="${2:-$(dirname "$0")/../edge/assets/warning_zh.wav}"
tmp="$(mktemp --suffix=.wav)"
trap 'rm -f "$tmp"' EXIT
# cmn = Mandarin Chinese; a slower rate carries better over a pond.
espeak-ng -v cmn -s 140 -a 200 -w "$tmp" "$TEXT"
# 16 kHz mono 16-bit, normalised to -1 dBFS, a short pause after.
sox "$tmp" -r 16000 -c 1 -b 16 "$OUT" norm -1 pad 0 0.5
echo "wrote $OUT"
