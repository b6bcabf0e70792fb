#!/usr/bin/env python3
"""Average two fine-tunes of one model, weight by weight (a "model soup"), into one .pt file.

pond-person-v1 is the mean of its stage-1 weights (strong in water, forgot large standing
people) and its stage-2 weights (the land rehearsal): see models/README.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from typing import Any


def _model(path: str) -> tuple[dict[str, Any], Any]:
    """The checkpoint dict and its float model (the EMA weights when training left them)."""
    import torch
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt, (ckpt.get("ema") or ckpt["model"]).float()


def average(a_path: str, b_path: str, out: str, alpha: float) -> None:
    """Write alpha * A + (1 - alpha) * B (floating tensors; the rest from A) to out."""
    import torch
    ckpt_a, a = _model(a_path)
    _, b = _model(b_path)
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise SystemExit(f"{a_path} and {b_path} are not the same architecture")
    mixed = {k: alpha * sa[k] + (1 - alpha) * sb[k] if sa[k].is_floating_point() else sa[k]
             for k in sa}
    model = copy.deepcopy(a)
    model.load_state_dict(mixed)
    ckpt = {k: v for k, v in ckpt_a.items() if k not in ("optimizer", "ema", "updates")}
    ckpt.update(model=model.half(), ema=None, optimizer=None)
    torch.save(ckpt, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: average A and B into OUT."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("out")
    p.add_argument("--alpha", type=float, default=0.5, help="share of A (default 0.5)")
    args = p.parse_args(argv)
    average(args.a, args.b, args.out, args.alpha)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
