"""The one place that sets Ultralytics' environment: offline, quiet, a writable settings folder."""

from __future__ import annotations

import os


def ultralytics_offline() -> None:
    """Keep Ultralytics from phoning home and give it a writable settings folder.

    Call before Ultralytics is first imported (it reads these at import); values already set
    in the environment win.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    state = os.environ.get("STATE_DIRECTORY") or os.path.expanduser("~/.config")
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(state, "Ultralytics"))
