#!/usr/bin/env python3
"""Webhook receiver for test_sim.sh: records every POST as one JSON line and checks
its X-Twilio-Signature independently of herald's C code (HMAC-SHA1 over the URL and
the sorted form parameters, keyed with the auth token, base64).

usage: sim_receiver.py AUTH_TOKEN PORT_FILE LOG_FILE [--port N] [--fail-first K] [--delay-ms D]
  --port N        listen on N instead of a free port
  --fail-first K  answer the first K deliveries of each (MessageSid, MessageStatus) with 503
                  (not logged), to exercise retries
  --delay-ms D    wait D ms before answering each request (a slow receiver)
"""
import base64, collections, hashlib, hmac, json, sys, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

token, port_file, log_file = sys.argv[1], sys.argv[2], sys.argv[3]
opts = dict(zip(sys.argv[4::2], (int(v) for v in sys.argv[5::2])))
listen_port = opts.get("--port", 0)
fail_first = opts.get("--fail-first", 0)
delay_s = opts.get("--delay-ms", 0) / 1000.0
seen = collections.Counter()
lock = threading.Lock()


def expected_signature(url, pairs):
    data = url
    by_name = {}
    for k, v in pairs:
        by_name.setdefault(k, set()).add(v)
    for k in sorted(by_name):
        for v in sorted(by_name[k]):
            data += k + v
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n).decode()
        if delay_s:
            time.sleep(delay_s)
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
        p = dict(pairs)
        with lock:
            key = (p.get("MessageSid"), p.get("MessageStatus"))
            seen[key] += 1
            k = seen[key]
        if k <= fail_first:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
        url = "http://%s%s" % (self.headers.get("Host"), self.path)
        sig = self.headers.get("X-Twilio-Signature", "")
        rec = {"path": self.path, "url": url, "signature": sig,
               "sig_ok": hmac.compare_digest(sig, expected_signature(url, pairs)),
               "params": dict(pairs)}
        with lock, open(log_file, "a") as f:
            f.write(json.dumps(rec) + "\n")
        body = b"<Response/>"
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", listen_port), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
