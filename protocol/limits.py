"""Schema version and size limits of the v1 wire contract."""

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 16 * 1024
MAX_SNAPSHOT_BYTES = 150 * 1000
MAX_HEALTH_BYTES = 16 * 1024
MAX_CMD_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16  # lists/objects inside each other; real payloads nest 4 deep at most
