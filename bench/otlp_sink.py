#!/usr/bin/env python3
"""A do-nothing OTLP/HTTP receiver for bench/hop_exchange.sh: answers 200 to
every POST (an empty ExportTraceServiceResponse) and counts the bytes, so the
broker's export path runs in full against a local collector.
Usage: python3 bench/otlp_sink.py [PORT]   (default 4318)"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = 0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global received
        received += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
try:
    ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
except KeyboardInterrupt:
    pass
finally:
    print(f"otlp_sink: {received} bytes received", file=sys.stderr)
