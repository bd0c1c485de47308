"""A webhook receiver on loopback for the SDK scripts: it records every
delivery it accepts (headers, raw body) so the scripts can verify them as a
consumer would, and refuses deliveries while told to, so a script can make
one fail."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = []
refused = []
arrived = threading.Condition()
refusing = threading.Event()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        delivery = ({k.lower(): v for k, v in self.headers.items()}, body)
        refuse = refusing.is_set()
        with arrived:
            (refused if refuse else received).append(delivery)
            arrived.notify_all()
        self.send_response(500 if refuse else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for_deliveries(n):
    """Waits until `n` deliveries were accepted."""
    with arrived:
        ok = arrived.wait_for(lambda: len(received) >= n, timeout=15)
    assert ok, f"expected {n} deliveries, got {len(received)}"


def start():
    """Starts the receiver; answers the URL to subscribe."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook"
