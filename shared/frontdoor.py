"""The front door: one address that routes each path to the service that owns it, as an ingress would."""

from __future__ import annotations

import os
import re
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path

import requests
import swagger_ui_bundle
from flask import Flask, Response, request, send_from_directory

from shared import tracing
from shared.config import SERVICES
from shared.service import routes
from shared.web import add_security_headers

STATIC = Path(__file__).with_name("static")  # scripts the pages load (no page has inline script)


HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-encoding", "content-length", "host"}

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Compassionate Communities</title></head>
<body><main>
<h1>Compassionate Communities volunteer support</h1>
<p><a href="/login">Sign in</a>: coordinators to the requests board, managers to the dashboard, referrers to
 their referrals, administrators to choose a community.</p>
<p>Trying it out without Twilio? The <a href="/simulator">SMS simulator</a> shows the texts each volunteer's phone
received, and lets you reply as them.</p>
<p>The API lives at this address (<a href="/docs">API documentation</a>, <a href="/openapi.json">OpenAPI</a>).
Every call needs a bearer token: <code>ccs tokens issue --role coordinator</code>.</p>
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


DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Compassionate Communities API</title><link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body></html>
"""


NGINX_HEAD = """\
# Written by `ccs deploy nginx` from the routes each service declares (shared/service.py); do not edit by hand:
# change a service's `routes` in its bootstrap.py and run the command again (a test checks this file is current).
# The production front door (mounted as /etc/nginx/conf.d/default.conf). Each path prefix goes to the service
# that owns it, as the development front door does: a prefix matches itself and anything under it ("/sms" and
# "/sms/inbound", not "/smsx"). Everything else ("/", "/docs", "/openapi.json", unknown paths) goes to the Python
# front door, which serves the index page, the API documentation and the merged OpenAPI.

# Docker's DNS; names are looked up again every 10s, so scaled or restarted containers get traffic.
resolver 127.0.0.11 valid=10s ipv6=off;

# Access logs keep each request's path without its query string, which can hold a phone number or a name.
log_format ccs '$remote_addr [$time_local] "$request_method $uri" $status $body_bytes_sent $request_time';
"""

NGINX_SERVER = """\
server {
    listen 8000;
    server_tokens off;
    access_log /var/log/nginx/access.log ccs;
    client_max_body_size 2m;

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-Proto $scheme;
"""


def nginx_config(table: dict[str, str] | None = None) -> str:
    """deploy/nginx.conf: an upstream per service (its `<name>-web` containers) and one location per service
    matching each of its prefixes, itself and anything under it."""
    table = routes() if table is None else table
    owners = list(dict.fromkeys(table.values()))
    parts = [NGINX_HEAD]
    for name in [*owners, "frontdoor"]:
        host = "frontdoor" if name == "frontdoor" else f"{name}-web"
        parts.append(f"upstream {name} {{\n    zone {name} 64k;\n    server {host}:8000 resolve;\n}}\n")
    parts.append(NGINX_SERVER)
    for name in owners:
        prefixes = "|".join(re.escape(prefix.lstrip("/")).replace("\\/", "/")
                            for prefix, owner in table.items() if owner == name)
        parts.append(f"    location ~ ^/({prefixes})(/|$) {{\n        proxy_pass http://{name};\n    }}\n")
    parts.append("    location / {\n        proxy_pass http://frontdoor;\n    }\n}\n")
    return "\n".join(parts)


def merge_openapi(documents: dict[str, dict]) -> dict:
    """One OpenAPI document from each service's: paths, tags and components side by side.

    Two services may share a component (the problem schema, the bearer scheme) only if it is identical."""
    merged = {"openapi": next(iter(documents.values()))["openapi"],
              "info": {"title": "Compassionate Communities", "version": "1",
                       "description": "Every service's API, as the front door routes it."},
              "tags": [], "paths": {}, "components": {}}
    for name, document in documents.items():
        merged["tags"] += document.get("tags", [])
        for path, item in document.get("paths", {}).items():
            if path in merged["paths"]:
                raise ValueError(f"{path} is served by two services")
            merged["paths"][path] = item
        for section, entries in document.get("components", {}).items():
            into = merged["components"].setdefault(section, {})
            for key, value in entries.items():
                if into.setdefault(key, value) != value:
                    raise ValueError(f"{name} defines components.{section}.{key} differently")
    return merged


def route(path: str) -> str | None:
    """The service that owns a path, or None."""
    table = routes()
    matches = [prefix for prefix in table if path == prefix or path.startswith(prefix + "/")]
    return table[max(matches, key=len)] if matches else None


def create_app(backends: dict[str, str], public_url: str = "") -> Flask:
    """The front door, forwarding to `backends` (service name -> base URL). Its own answers carry the security
    headers the services' do (HSTS when `public_url` is https); theirs pass through as they are."""
    app = Flask(__name__, static_folder=None)
    add_security_headers(app, public_url)
    if tracing.configure("frontdoor"):
        tracing.trace_requests(app)
    http = requests.Session()
    # Pass each browser's cookies through, but keep none here: a kept session cookie would go out with every
    # later request that brings none of its own, signing anonymous visitors in as whoever signed in last.
    http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    @app.get("/")
    def index():
        """What lives behind this address."""
        return Response(INDEX, mimetype="text/html")

    @app.get("/openapi.json")
    def openapi():
        """Every service's OpenAPI document, merged."""
        try:
            documents = {name: http.get(f"{backends[name]}/openapi/{name}.json", timeout=10).json()
                         for name in SERVICES}
        except (requests.RequestException, ValueError):
            body = {"type": "about:blank", "title": "Bad Gateway", "status": 502,
                    "detail": "A service did not give its OpenAPI document."}
            return body, 502, {"Content-Type": "application/problem+json"}
        return merge_openapi(documents)

    @app.get("/docs")
    def docs():
        """The API documentation, from the merged OpenAPI document (Swagger UI, served from here)."""
        return Response(DOCS, mimetype="text/html")

    @app.get("/docs/static/<path:filename>")
    def docs_static(filename):
        return send_from_directory(Path(swagger_ui_bundle.swagger_ui_path), filename)

    @app.get("/static/<path:filename>")
    def static_files(filename):
        """The scripts the pages load (Swagger UI's set-up, the print button)."""
        return send_from_directory(STATIC, filename)

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
        # The address the request came from, after any the proxies before us added (shared/web.py client_address).
        headers["X-Forwarded-For"] = ", ".join(filter(None, [request.headers.get("X-Forwarded-For"),
                                                             request.remote_addr]))
        trace_context = tracing.current_context()
        if trace_context:  # the service's span continues this one's
            headers = {k: v for k, v in headers.items() if k.lower() not in trace_context} | trace_context
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
                for i, name in enumerate(SERVICES)}
    return create_app(backends, os.environ.get("PUBLIC_URL", "http://localhost:8000"))
