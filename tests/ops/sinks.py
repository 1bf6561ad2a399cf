"""Loopback sinks that alert deliveries land in: an aiosmtpd SMTP server and an HTTP webhook."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from aiosmtpd.controller import Controller


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.arrived:
            self.messages.append(message_from_bytes(envelope.original_content))
            self.arrived.notify_all()
        return "250 OK"

    def wait(self, n: int, timeout: float = 10.0) -> list[Message]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= n, timeout)
        return list(self.messages)


@contextmanager
def smtp_sink() -> Iterator[tuple[int, _Mailbox]]:
    box = _Mailbox()
    # aiosmtpd's start() connects to its own port to check it is up, so it needs a real one.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, box
    finally:
        ctl.stop()


class _Hooks:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 204


@contextmanager
def webhook_sink() -> Iterator[tuple[str, _Hooks]]:
    hooks = _Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            hooks.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(hooks.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/hook", hooks
    finally:
        srv.shutdown()
        srv.server_close()
