"""A node link in its own process, for kill -9 tests: python node_proc.py CONFIG.json [FILL]."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.config import NodeConfig  # noqa: E402
from edge.link.mqtt import NodeLink  # noqa: E402
from edge.link.outbox import Outbox  # noqa: E402
from protocol import Event  # noqa: E402


def main() -> None:
    """Fill the outbox with FILL events (if given), then publish until killed; SIGTERM
    stops the link cleanly (offline, reason planned) like the node service does."""
    cfg = NodeConfig.model_validate(json.loads(Path(sys.argv[1]).read_text()))
    box = Outbox(cfg.outbox)
    fill = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    for i in range(fill):
        box.put(Event.make("person_near_water", cfg.node_id, cfg.pond_id, id=f"k{i:04d}",
                           track_id=i))
    link = NodeLink(cfg, box)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    link.start()
    print("started", flush=True)
    stop.wait()
    link.stop()


if __name__ == "__main__":
    main()
