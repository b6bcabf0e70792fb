#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh. Stop the server first (systemctl stop
# pondwatch-server); start it again afterwards, it migrates an older backup to the head.
#   bash scripts/restore.sh DATABASE_URL BACKUP_FILE
# SQLite: the current database (if any) is kept beside it as *.before-restore-TIMESTAMP.
# PostgreSQL: pg_restore --clean into the (existing, possibly empty) database.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 DATABASE_URL BACKUP_FILE" >&2; exit 2
fi
url="$1"; backup="$2"
py="${PYTHON:-python3}"
[ -f "$backup" ] || { echo "restore: no backup file $backup" >&2; exit 1; }
case "$url" in
  sqlite:///*)
    db="${url#sqlite:///}"
    if [ -f "$db" ]; then
      keep="$db.before-restore-$(date -u +%Y%m%dT%H%M%SZ)"
      mv "$db" "$keep"
      for ext in -wal -shm; do [ -f "$db$ext" ] && mv "$db$ext" "$keep$ext"; done
      echo "previous database kept as $keep"
    fi
    mkdir -p "$(dirname "$db")"
    "$py" - "$backup" "$db" <<'PY'
import sqlite3, sys
src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
ok = src.execute("PRAGMA integrity_check").fetchone()[0]
if ok != "ok":
    sys.exit(f"restore: {sys.argv[1]} fails its integrity check: {ok}")
dst = sqlite3.connect(sys.argv[2])
with dst:
    src.backup(dst)
dst.close(); src.close()
PY
    ;;
  postgresql*://*)
    libpq="${url/postgresql+psycopg:/postgresql:}"; libpq="${libpq/postgresql+psycopg2:/postgresql:}"
    pg_restore --clean --if-exists --no-owner --exit-on-error --dbname="$libpq" "$backup"
    ;;
  *)
    echo "restore: unsupported database URL (sqlite:/// or postgresql://): ${url%%:*}:…" >&2
    exit 2 ;;
esac
echo "restored $backup into the database"
