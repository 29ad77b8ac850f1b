#!/usr/bin/env python3
"""Helper for the webhook integration tests (not a test itself): an HTTP endpoint for
the post-commit actions. Records each POST as a JSON line {path, headers, body} in
LOG_FILE. /ai answers {"reply": "AI says hi"}; /slow waits 5 s; /fail answers 500;
/status/NNN answers NNN; a query ?ms=N on any path waits N ms before answering.

usage: test_webhook_receiver.py PORT_FILE LOG_FILE [PORT]   (PORT: bind that port, not any)
"""
import json, sys, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port_file, log_file = sys.argv[1], sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace")
        with open(log_file, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": body}) + "\n")
        status, out = 200, b'{"ok":true}'
        delay = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("ms")
        if delay:
            time.sleep(int(delay[0]) / 1000)
        if self.path.startswith("/ai"):
            out = json.dumps({"reply": "AI says hi"}).encode()
        elif self.path.startswith("/slow"):
            time.sleep(5)
        elif self.path.startswith("/fail"):
            status = 500
        elif self.path.startswith("/status/"):
            status = int(self.path[len("/status/"):].split("?")[0])
            out = b'{"error":"as asked"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3]) if len(sys.argv) > 3 else 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
