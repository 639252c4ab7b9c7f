"""The front door: one address that routes each path to the service that owns it, as an ingress would."""

from __future__ import annotations

import os

import requests
from flask import Flask, Response, request

# Path prefix -> service. The longest matching prefix wins.
ROUTES = {
    "/requests": "intake",
    "/volunteers": "matching",
    "/sms": "notify",
    "/activity": "metrics",
    "/login": "intake",
    "/logout": "intake",
    "/board": "intake",
    "/referrals": "intake",
    "/fhir": "intake",
}
for _name in ("intake", "matching", "notify", "metrics"):
    ROUTES[f"/healthz/{_name}"] = _name
    ROUTES[f"/openapi/{_name}.json"] = _name

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-encoding", "content-length", "host"}

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Compassionate Communities</title></head>
<body><main>
<h1>Compassionate Communities volunteer support</h1>
<p>The API lives at this address. Every call needs a bearer token: <code>ccs tokens issue --role coordinator</code>.</p>
<ul>
<li><code>POST /requests</code>, <code>GET /requests/&lt;id&gt;</code> &mdash; intake
 (<a href="/openapi/intake.json">OpenAPI</a>)</li>
<li><code>POST /volunteers</code>, <code>GET /volunteers</code> &mdash; matching
 (<a href="/openapi/matching.json">OpenAPI</a>)</li>
<li><code>POST /sms/inbound</code> (Twilio webhook), <code>GET /sms/messages</code> &mdash; notify
 (<a href="/openapi/notify.json">OpenAPI</a>)</li>
<li><code>GET /activity?from=&amp;to=</code> &mdash; metrics (<a href="/openapi/metrics.json">OpenAPI</a>)</li>
</ul>
</main></body></html>
"""


def route(path: str) -> str | None:
    """The service that owns a path, or None."""
    matches = [prefix for prefix in ROUTES if path == prefix or path.startswith(prefix + "/")]
    return ROUTES[max(matches, key=len)] if matches else None


def create_app(backends: dict[str, str]) -> Flask:
    """The front door, forwarding to `backends` (service name -> base URL)."""
    app = Flask(__name__)
    http = requests.Session()

    @app.get("/")
    def index():
        """What lives behind this address."""
        return Response(INDEX, mimetype="text/html")

    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def forward(path):
        """Pass the request to the service that owns the path, and its answer back."""
        name = route("/" + path)
        if name is None:
            body = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No service owns this path."}
            return body, 404, {"Content-Type": "application/problem+json"}
        headers = {k: v for k, v in request.headers if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        try:
            upstream = http.request(request.method, backends[name] + request.full_path.rstrip("?"),
                                    headers=headers, data=request.get_data(), allow_redirects=False, timeout=30)
        except requests.RequestException:
            body = {"type": "about:blank", "title": "Bad Gateway", "status": 502,
                    "detail": f"The {name} service did not answer."}
            return body, 502, {"Content-Type": "application/problem+json"}
        out = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
        return Response(upstream.content, status=upstream.status_code, headers=out)

    return app


def create_app_from_env() -> Flask:
    """The front door, with each service's address from `CCS_<SERVICE>_URL` (defaults: ports 8001-8004)."""
    backends = {name: os.environ.get(f"CCS_{name.upper()}_URL", f"http://127.0.0.1:{8001 + i}")
                for i, name in enumerate(("intake", "matching", "notify", "metrics"))}
    return create_app(backends)
