#!/usr/bin/env python3
"""A small HTTP callback service for Hawser's auth integration tests.

Python standard library only. Binds 127.0.0.1 on a free port (or --port)
and prints one line "LISTEN port=<n>" on stdout once it accepts requests.

  POST /auth  the CONNECT callback (auth.http.url). Body:
              {clientid, username, password, peer, listener, protocol}
              Answer from the --config users table:
                users[username] = {"password": "...",   # optional check
                                   "result": "allow"|"deny",
                                   "user": "...", "attrs": {...}, "acl": [...],
                                   "delay_s": 0.5,          # answer late
                                   "status": 500}           # fail instead
              Unknown users are denied.
  POST /acl   a delegated ACL callback (auth.callbacks.<name>.url). Body:
              {action, clientid, username, topic, qos, retain}
              allow when the topic starts with one of --config "acl_allow"
              prefixes (optionally per user: "acl_allow_users": {user: [...]}).
  GET  /calls {"auth": n, "acl": n}: how many callbacks were received.
  POST /reset zero the counters.

--config FILE is JSON: {"users": {...}, "acl_allow": ["live/paid"], ...}.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.calls = {"auth": 0, "acl": 0}

    def count(self, kind):
        with self.lock:
            self.calls[kind] += 1


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep test output quiet
            pass

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def read_json(self):
            n = int(self.headers.get("Content-Length") or 0)
            try:
                return json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return {}

        def do_GET(self):
            if self.path == "/calls":
                with state.lock:
                    self.reply(200, dict(state.calls))
            else:
                self.reply(404, {})

        def do_POST(self):
            req = self.read_json()
            if self.path == "/reset":
                with state.lock:
                    state.calls = {"auth": 0, "acl": 0}
                self.reply(200, {})
            elif self.path == "/auth":
                state.count("auth")
                self.auth(req)
            elif self.path == "/acl":
                state.count("acl")
                self.acl(req)
            else:
                self.reply(404, {})

        def auth(self, req):
            u = state.config.get("users", {}).get(req.get("username") or "")
            if u is None:
                self.reply(200, {"result": "deny"})
                return
            if u.get("delay_s"):
                time.sleep(u["delay_s"])  # simulates a slow business service
            if u.get("status"):
                self.reply(u["status"], {})
                return
            if "password" in u and u["password"] != req.get("password"):
                self.reply(200, {"result": "deny"})
                return
            ans = {"result": u.get("result", "allow")}
            for k in ("user", "attrs", "acl"):
                if k in u:
                    ans[k] = u[k]
            self.reply(200, ans)

        def acl(self, req):
            topic = req.get("topic") or ""
            prefixes = list(state.config.get("acl_allow", []))
            prefixes += state.config.get("acl_allow_users", {}).get(req.get("username") or "", [])
            ok = any(topic.startswith(p) for p in prefixes)
            self.reply(200, {"result": "allow" if ok else "deny"})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--config", help="JSON file with users and acl_allow")
    args = ap.parse_args()
    config = {}
    if args.config:
        with open(args.config) as f:
            config = json.load(f)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(config)))
    srv.daemon_threads = True
    print("LISTEN port=%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
