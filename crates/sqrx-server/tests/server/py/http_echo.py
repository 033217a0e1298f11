# An HTTP/1.1 server that answers every request with JSON describing it: method, path (with
# query), headers, and the length and sha256 of the body it read (Content-Length or chunked).
# Listens on 0.0.0.0:$PORT (default 8001). Paths under /kind/ answer in the other ways a
# proxy must relay: chunked with a trailer (and with a misleading length beside it), delimited by the connection's end, 204, a 103
# before the answer, and a keep-alive answer on a connection closed right after it.
import hashlib
import http.server
import json
import os


class Describe(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self):
        digest, size = hashlib.sha256(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    break
                chunk = self.rfile.read(n)
                digest.update(chunk)
                size += len(chunk)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                left -= len(chunk)
        return size, digest.hexdigest()

    def answer(self):
        size, sha = self.body()
        if self.path.startswith("/kind/"):
            return self.kind(self.path[len("/kind/"):])
        out = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body_len": size,
                "body_sha256": sha,
                "peer_port": self.client_address[1],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("X-Hop", "dropped")
        self.send_header("Connection", "keep-alive, X-Hop")
        self.end_headers()
        self.wfile.write(out)

    def kind(self, what):
        if what in ("chunked", "both"):
            self.send_response(200)
            if what == "both":
                self.send_header("Content-Length", "999")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Sum")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Sum: 3\r\n\r\n")
        elif what == "close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end")
        elif what == "empty":
            self.send_response(204)
            self.end_headers()
        elif what == "hints":
            self.send_response_only(103)
            self.send_header("Link", "</style.css>; rel=preload")
            self.end_headers()
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hints")
        elif what == "bye":
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"bye")
            self.close_connection = True
        else:
            self.send_error(404)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "42")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8001"))), Describe).serve_forever()
