"""A webhook receiver on loopback for the SDK scripts: it records every
delivery (headers, raw body) so the scripts can verify them as a consumer
would."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = []
arrived = threading.Condition()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with arrived:
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            arrived.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for_deliveries(n):
    with arrived:
        ok = arrived.wait_for(lambda: len(received) >= n, timeout=15)
    assert ok, f"expected {n} deliveries, got {len(received)}"


def start():
    """Starts the receiver; answers the URL to subscribe."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook"
