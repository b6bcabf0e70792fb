#!/usr/bin/env bash
# Back up the PondWatch server database while the server runs.
#   bash scripts/backup.sh DATABASE_URL OUT_FILE
# DATABASE_URL is the `database:` of server.yaml:
#   sqlite:////var/lib/pondwatch/pondwatch-server.db  -> an online SQLite copy (backup API)
#   postgresql+psycopg://user@host:5432/pondwatch     -> pg_dump --format=custom
# The password of a PostgreSQL URL may come from ~/.pgpass or PGPASSWORD instead.
# Also keep, elsewhere: the secret key (PONDWATCH_SECRET_KEY or secret_key_file) and, with
# the private broker, its credentials folder (mosquitto/credentials beside the database).
#
# A backup holds snapshots that may show minors: every file is written 0600 (umask 077), and
# only the newest PONDWATCH_BACKUP_KEEP (default 7) backups of the same series are kept, so no
# copy outlives snapshot_retention_days by more than that many runs. The series is the files
# beside OUT_FILE named like it up to its first digit, with its extension: a nightly
#   backup.sh URL /var/backups/pondwatch/pondwatch-$(date +%F).db
# keeps the newest 7 pondwatch-*.db there. An OUT_FILE name without a digit has no series.
set -euo pipefail
umask 077
if [ $# -ne 2 ]; then
  echo "usage: $0 DATABASE_URL OUT_FILE" >&2; exit 2
fi
url="$1"; out="$2"
py="${PYTHON:-python3}"
case "$url" in
  sqlite:///*)
    db="${url#sqlite:///}"
    [ -f "$db" ] || { echo "backup: no SQLite database at $db" >&2; exit 1; }
    "$py" - "$db" "$out.tmp" <<'PY'
import sqlite3, sys
src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
dst = sqlite3.connect(sys.argv[2])
with dst:
    src.backup(dst)  # a consistent snapshot, even while the server writes
ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
dst.close(); src.close()
sys.exit(0 if ok == "ok" else f"backup: integrity check of the copy failed: {ok}")
PY
    ;;
  postgresql*://*)
    libpq="${url/postgresql+psycopg:/postgresql:}"; libpq="${libpq/postgresql+psycopg2:/postgresql:}"
    pg_dump --format=custom --no-owner --file="$out.tmp" --dbname="$libpq"
    ;;
  *)
    echo "backup: unsupported database URL (sqlite:/// or postgresql://): ${url%%:*}:…" >&2
    exit 2 ;;
esac
mv "$out.tmp" "$out"
chmod 600 "$out"
echo "backup written: $out ($(stat -c %s "$out") bytes)"

keep="${PONDWATCH_BACKUP_KEEP:-7}"
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || { echo "backup: PONDWATCH_BACKUP_KEEP must be >= 1" >&2; exit 2; }
dir="$(dirname -- "$out")"; name="$(basename -- "$out")"
stem="${name%%[0-9]*}"
if [ "$stem" != "$name" ]; then
  ext=""; case "$name" in *.*) ext=".${name##*.}" ;; esac
  # newest first; everything past the first $keep of the series goes
  find "$dir" -maxdepth 1 -type f -name "${stem}*${ext}" ! -name '*.tmp' -printf '%T@ %p\n' \
    | sort -rn | tail -n +"$((keep + 1))" | cut -d' ' -f2- | while IFS= read -r old; do
      rm -f -- "$old" && echo "old backup removed: $old"
    done
fi
