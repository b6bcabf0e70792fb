"""pondwatch-edge model push: upload a verified model with its manifest entry to the server."""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any

from edge.manifest import Manifest, ModelStoreError
from edge.model import store as modelstore
from protocol import signing
from protocol.digest import sha256_file


def multipart(fields: dict[str, str], file_name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with text fields and one file; (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{file_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def push(args: argparse.Namespace, manifest: Manifest) -> int:
    """POST /api/models with the file (sha256 checked first), its signature and the signed
    entry; exit code."""
    model = modelstore.resolve(args.name, args.dir, manifest)
    sig = signing.sig_path(model.path)
    if not sig.is_file():
        raise ModelStoreError(f"{sig}: missing; the server takes only signed models: "
                              f"pondwatch-edge model sign {args.name} --key KEY")
    try:
        doc = signing.read_doc(sig)
        payload = json.loads(doc.payload)
    except (signing.SignatureError, ValueError) as exc:
        raise ModelStoreError(f"{sig}: {exc}") from exc
    if payload.get("sha256") != sha256_file(model.path):
        raise ModelStoreError(f"{sig} signs another file than {model.path}; sign it again")
    entry: dict[str, Any] = payload.get("entry") or {}
    password = os.environ.get("PONDWATCH_PASSWORD") or getpass.getpass("password: ")
    body, ctype = multipart({"name": args.name, "entry": json.dumps(entry),
                             "signature": doc.model_dump_json()},
                            model.path.name, model.path.read_bytes())
    token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
    req = urllib.request.Request(args.server.rstrip("/") + "/api/models", data=body,
                                 method="POST", headers={"Content-Type": ctype,
                                                         "Authorization": f"Basic {token}"})
    context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    try:
        with urllib.request.urlopen(req, timeout=modelstore.CONNECT_TIMEOUT_S * 12,
                                    context=context) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ModelStoreError(f"server refused the upload: HTTP {exc.code} {detail}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ModelStoreError(f"cannot reach {args.server}: {getattr(exc, 'reason', exc)}"
                              ) from exc
    print(f"{args.name}: uploaded, sha256 {answer['sha256']}; assign it with POST "
          f"{args.server.rstrip('/')}/api/models/{args.name}/assign", file=sys.stderr)
    print(json.dumps(answer, ensure_ascii=False))
    return 0
