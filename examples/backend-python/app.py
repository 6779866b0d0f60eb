#!/usr/bin/env python3
"""An app backend for the uploadbucket signer, in Python's standard library only.

It forwards the browser's upload calls under /api/uploads to the signer sidecar in the same
pod, naming the user from the app's own session. The rules are those of the marked part of
examples/web/server.js; tests/tests/backends.rs runs this file against a signer on Ceph RGW.

    python3 app.py      PORT (default 3000), UPLOADBUCKET_SIGNER_URL, TOKEN_AUTH=1
"""

import json
import os
import re
import secrets
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The webhook sets UPLOADBUCKET_SIGNER_URL in every app container of an injected pod.
SIGNER = os.environ.get("UPLOADBUCKET_SIGNER_URL", "http://127.0.0.1:8787").rstrip("/")
# With spec.uploads.auth.jwt on the UploadBucket (TOKEN_AUTH=1 here), the signer checks the
# user's token itself and takes the owner from it: this backend forwards the browser's
# Authorization header and names no owner.
TOKEN_AUTH = os.environ.get("TOKEN_AUTH") == "1"
# The largest request body taken from the browser, as express.json() takes (100 KiB): the
# longest call, completing a 10 GiB upload in upload.js's 8 MiB parts, is about 80 KB.
MAX_BODY = 100 * 1024

# The signer calls a browser may make, under /api/uploads: method, path, and where the
# session's owner goes. Anything else (the signer's other routes, dot segments, encoded
# slashes: any path outside this table) is refused here and never reaches the signer.
PREFIX = "/api/uploads"
ID = r"[A-Za-z0-9._~-]+"
ROUTES = [
    ("POST", "/", "body"),
    ("POST", "/multipart", "body"),
    ("POST", "/verify", "body"),
    ("GET", rf"/multipart/{ID}/(?:batch|[0-9]+)", "query"),
    ("GET", rf"/multipart/{ID}", "query"),
    ("POST", rf"/multipart/{ID}/complete", "query"),
    ("DELETE", rf"/multipart/{ID}", "query"),
]
# The query parameters the signer's multipart calls read; the owner is added here.
QUERY_NAMES = ("key", "size", "partNumbers", "sizes")
UID_COOKIE = re.compile(r"(?:^|;\s*)uid=([0-9a-f]{32})(?:;|$)")
# The signer is on the pod's loopback: never reached through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ApiError(Exception):
    """A refusal of this backend's own, answered as the signer answers: {"error": {code, message}}."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def signer_call(method, path):
    """The signer's path for a browser's call and where its owner goes, or None."""
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return None
    rest = path[len(PREFIX):] or "/"
    # `.` or `..` as an id would move the path once resolved: not one of ours either.
    if any(segment in (".", "..") for segment in rest.split("/")):
        return None
    for route_method, pattern, owner_in in ROUTES:
        if route_method == method and re.fullmatch(pattern, rest):
            return "/uploads" + ("" if rest == "/" else rest), owner_in
    return None


class Handler(BaseHTTPRequestHandler):
    timeout = 30  # seconds a client may take to send its request

    def handle_api(self):
        self.new_cookie = None
        try:
            self.forward()
        except ApiError as e:
            error = {"error": {"code": e.code, "message": e.message}}
            self.reply(e.status, json.dumps(error).encode())

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = handle_api

    def forward(self):
        body = self.json_body()
        path, _, query = self.path.partition("?")
        call = signer_call(self.command, path)
        if call is None:
            raise ApiError(404, "NotFound", f"{self.command} {path} is not an upload call")
        signer_path, owner_in = call
        # The owner is set here from the session, never taken from the browser: keys go under
        # <prefix><owner>/ and every later call on an upload must name the same owner. With
        # tokens the signer takes it from the token instead.
        headers = {"Content-Type": "application/json"}
        owner = None if TOKEN_AUTH else self.current_user()
        if TOKEN_AUTH and self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        url = SIGNER + signer_path
        if owner_in == "query":
            asked = urllib.parse.parse_qs(query, keep_blank_values=True)
            params = {n: asked[n][0] for n in QUERY_NAMES if len(asked.get(n, [])) == 1}
            if owner:
                params["owner"] = owner
            if params:
                url += "?" + urllib.parse.urlencode(params)
        elif owner:
            # Parsed and written again, so the signer sees one `owner`: this one.
            body = {**(body or {}), "owner": owner}
        data = json.dumps(body).encode() if self.command == "POST" and body is not None else None
        request = urllib.request.Request(url, data=data, method=self.command, headers=headers)
        try:
            with OPENER.open(request, timeout=60) as r:
                status, answer, got = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:  # the signer's refusals, passed on as they are
            status, answer, got = e.code, e.read(), e.headers
        except (urllib.error.URLError, HTTPException, OSError) as e:
            print(f"signer unreachable at {SIGNER}: {e}", file=sys.stderr, flush=True)
            raise ApiError(502, "SignerUnavailable", "the upload service is not reachable; try again")
        passed = [(h, got[h]) for h in ("WWW-Authenticate", "Retry-After") if got[h]]
        self.reply(status, answer, passed)

    def json_body(self):
        """The browser's JSON object, or None when it sent its body as something else."""
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            raise ApiError(411, "LengthRequired", "send the request body with a content-length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "InvalidBody", "content-length is not a number") from None
        if length > MAX_BODY:
            # Read (a bounded part of) it anyway: a client still sending when the connection
            # closes may see it reset instead of this answer.
            self.rfile.read(min(length, 10 * MAX_BODY))
            raise ApiError(413, "BodyTooLarge", f"the request body is over {MAX_BODY} bytes")
        raw = self.rfile.read(max(length, 0))
        if self.headers.get_content_type() != "application/json":
            return None
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(400, "InvalidJson", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidJson", "the body must be a JSON object")
        return body

    def current_user(self):
        """Who is uploading. Use your login session's user id here; this example gives each
        browser an anonymous id in an HttpOnly cookie, so every browser has its own folder."""
        m = UID_COOKIE.search(self.headers.get("Cookie", ""))
        if m:
            return m.group(1)
        uid = secrets.token_hex(16)
        self.new_cookie = f"uid={uid}; Path=/; HttpOnly; SameSite=Strict"
        return uid

    def reply(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.new_cookie:
            self.send_header("Set-Cookie", self.new_cookie)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        pass  # no access log; errors still go to stderr


def main():
    server = ThreadingHTTPServer(("", int(os.environ.get("PORT", "3000"))), Handler)
    # Kubernetes sends SIGTERM first: stop accepting, finish what is in flight.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    port = server.server_address[1]
    print(f"listening address=127.0.0.1:{port} signer={SIGNER}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
