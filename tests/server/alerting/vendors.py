"""Local stand-ins for the chat robots and the SMS gateway a county pages through.

Each is a real HTTP server on 127.0.0.1 that checks the request against the vendor's
documented shape (path, token, signature, JSON body) and answers like the vendor: success,
the vendor's own error answer, an HTTP error, or no answer at all (a timeout).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Each vendor's documented answers: success, and a typical error it gives with HTTP 200.
ANSWERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "dingtalk": ({"errcode": 0, "errmsg": "ok"},
                 {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
    "wecombot": ({"errcode": 0, "errmsg": "ok"},
                 {"errcode": 45009, "errmsg": "api freq out of limit"}),
    "feishu": ({"code": 0, "msg": "success", "data": {}},
               {"code": 9499, "msg": "Bad Request", "data": {}}),
    "smseagle": ({"result": {"message_id": 4753, "status": "ok"}},
                 {"result": {"error_text": "Invalid access token", "status": "error"}}),
}


def dingtalk_sign(secret: str, timestamp: str) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(secret, timestamp + '\\n' + secret))."""
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class VendorStandIn:
    """One vendor's endpoint. mode: ok | error (the vendor's error JSON, HTTP 200) |
    http_error (HTTP 503) | timeout (never answers until closed)."""

    def __init__(self, vendor: str, token: str, secret: str | None = None,
                 mode: str = "ok") -> None:
        """Listen on a free loopback port."""
        self.vendor, self.token, self.secret, self.mode = vendor, token, secret, mode
        self.requests: list[dict[str, Any]] = []   # every request: path, query, body
        self.accepted: list[dict[str, Any]] = []   # bodies answered with success
        self.problems: list[str] = []              # where a request broke the documented shape
        self._closing = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer._handle(self, raw)

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def _check(self, path: str, query: dict[str, list[str]], body: Any) -> str | None:
        """The first way the request differs from the vendor's documentation, else None."""
        v = self.vendor
        if not isinstance(body, dict):
            return "body is not a JSON object"
        if v == "dingtalk":
            if path != "/robot/send" or query.get("access_token") != [self.token]:
                return f"wrong endpoint {path} {query.get('access_token')}"
            if self.secret:
                ts, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
                if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600 * 1000:
                    return "timestamp missing or more than an hour off"
                # DingTalk: the base64 signature url-encoded once in the URL (parse_qs
                # decodes that once), so anything else does not match.
                if sign != dingtalk_sign(self.secret, ts):
                    return "sign not match"
            text = body.get("text", {}).get("content") if body.get("msgtype") == "text" else (
                body.get("markdown", {}).get("text"))
            if not isinstance(text, str) or not text or not isinstance(body.get("at"), dict):
                return "msgtype/text.content or at missing"
        elif v == "wecombot":
            if path != "/cgi-bin/webhook/send" or query.get("key") != [self.token]:
                return f"wrong endpoint {path}"
            text = body.get("text", {}).get("content")
            if body.get("msgtype") != "text" or not isinstance(text, str) or not text:
                return "msgtype text with text.content required"
            if len(text.encode()) > 2048:
                return "text.content over 2048 bytes"
        elif v == "feishu":
            if path.rstrip("/") != f"/open-apis/bot/v2/hook/{self.token}":
                return f"wrong endpoint {path}"
            text = body.get("content", {}).get("text")
            if body.get("msg_type") != "text" or not isinstance(text, str) or not text:
                return "msg_type text with content.text required"
        elif v == "smseagle":
            params = body.get("params", {})
            if path != "/jsonrpc/sms" or body.get("method") != "sms.send_sms":
                return f"wrong endpoint or method {path} {body.get('method')}"
            if params.get("access_token") != self.token:
                return "Invalid access token"
            if not params.get("to") or not params.get("message") or params.get("unicode") != 1:
                return "to, message and unicode=1 required"
        return None

    def _handle(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        """Record, check, answer as the mode says."""
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        try:
            body: Any = json.loads(raw or b"null")
        except json.JSONDecodeError:
            body = None
        with self._lock:
            self.requests.append({"path": url.path, "query": query, "body": body})
            mode = self.mode
        if mode == "timeout":
            self._closing.wait(30)
            return
        if mode == "http_error":
            h.send_response(503)
            h.end_headers()
            return
        problem = self._check(url.path, query, body)
        ok_answer, error_answer = ANSWERS[self.vendor]
        if problem:
            with self._lock:
                self.problems.append(problem)
            answer = dict(error_answer)
            for key in ("errmsg", "msg"):
                if key in answer:
                    answer[key] = problem
        else:
            answer = ok_answer if mode == "ok" else error_answer
            if mode == "ok":
                with self._lock:
                    self.accepted.append(body)
        data = json.dumps(answer).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def text_of(self, body: dict[str, Any]) -> str:
        """The message text a vendor body carries."""
        if self.vendor == "dingtalk":
            return str(body.get("text", {}).get("content") or body["markdown"]["text"])
        if self.vendor == "wecombot":
            return str(body["text"]["content"])
        if self.vendor == "feishu":
            return str(body["content"]["text"])
        return str(body["params"]["message"])

    def close(self) -> None:
        """Stop listening; release held requests; safe twice."""
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
