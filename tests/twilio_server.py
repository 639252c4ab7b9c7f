"""A local HTTP server that speaks Twilio's Messages API as the real `twilio` client calls it.

Point a client at it with `client.api.base_url = server.url`. It checks HTTP basic auth, answers a create with
Twilio's JSON (status 201), and can be told to answer the next calls with an error (Twilio's error body, with
its code), a 429 or 5xx, or to drop the connection. It records every request it got.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

ERRORS = {
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
}


@dataclass
class Call:
    """One request the server received."""

    method: str
    path: str
    form: dict[str, str]
    account: str


@dataclass
class TwilioServer:
    account_sid: str = "AC" + "a1" * 16
    auth_token: str = "b2" * 16
    calls: list[Call] = field(default_factory=list)
    created: list[dict[str, str]] = field(default_factory=list)  # the forms of the messages it accepted
    script: list = field(default_factory=list)  # what to do with the next calls: an error code, or "drop"

    def __post_init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                user, _, password = base64.b64decode(
                    self.headers.get("Authorization", "Basic ").split(" ", 1)[1] or b"").decode().partition(":")
                server.calls.append(Call("POST", self.path, form, user))
                expected = f"/2010-04-01/Accounts/{server.account_sid}/Messages.json"
                if (user, password) != (server.account_sid, server.auth_token):
                    return self.error(20003, form)
                if self.path != expected:
                    return self.answer(404, {"code": 20404, "message": "The requested resource was not found",
                                             "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404})
                for required, code in (("To", 21604), ("Body", 21602)):
                    if not form.get(required):
                        return self.error(code, form)
                if not (form.get("From") or form.get("MessagingServiceSid")):
                    return self.error(21603, form)
                action = server.script.pop(0) if server.script else None
                if action == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if action is not None:
                    return self.error(action, form)
                sid = "SM" + uuid.uuid4().hex
                server.created.append({**form, "Sid": sid})
                self.answer(201, {
                    "account_sid": server.account_sid, "api_version": "2010-04-01", "body": form.get("Body"),
                    "date_created": "Wed, 25 Nov 2026 10:00:00 +0000", "date_sent": None, "date_updated": None,
                    "direction": "outbound-api", "error_code": None, "error_message": None,
                    "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
                    "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD", "sid": sid,
                    "status": "accepted" if form.get("MessagingServiceSid") else "queued", "to": form.get("To"),
                    "uri": f"/2010-04-01/Accounts/{server.account_sid}/Messages/{sid}.json",
                })

            def error(self, code: int, form: dict):
                status, message = ERRORS[code]
                self.answer(status, {"code": code, "message": message.format(to=form.get("To")),
                                     "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status})

            def answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "TwilioServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
