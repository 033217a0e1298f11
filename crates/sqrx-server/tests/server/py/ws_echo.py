# A WebSocket echo server with nothing but the standard library (RFC 6455: the handshake,
# masked client frames with 7-, 16- and 64-bit lengths, fragmentation, ping, close).
# One thread per connection. Listens on 0.0.0.0:$PORT (default 9000).
import base64
import hashlib
import os
import socketserver
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def unmask(data, mask):
    n = len(data)
    if n == 0:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            self.serve()
        except (EOFError, ConnectionError, OSError):
            pass

    def serve(self):
        if not self.rfile.readline():
            return  # a readiness probe: connected and left
        headers = {}
        while True:
            line = self.rfile.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if key is None:
            body = b"websocket only\n"
            self.connection.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
        self.connection.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        parts, kind = [], 1
        while True:
            b0, b1 = read_exact(self.rfile, 2)
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", read_exact(self.rfile, 2))[0]
            elif n == 127:
                n = struct.unpack("!Q", read_exact(self.rfile, 8))[0]
            mask = read_exact(self.rfile, 4) if b1 & 0x80 else None
            payload = read_exact(self.rfile, n)
            if mask:
                payload = unmask(payload, mask)
            if opcode == 0x8:  # close: answer with the same code, then leave
                self.connection.sendall(frame(0x8, payload[:2]))
                return
            if opcode == 0x9:  # ping
                self.connection.sendall(frame(0xA, payload))
                continue
            if opcode == 0xA:  # pong
                continue
            if opcode in (0x1, 0x2):
                kind, parts = opcode, [payload]
            else:  # continuation
                parts.append(payload)
            if fin:
                self.connection.sendall(frame(kind, b"".join(parts)))
                parts = []


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


Server(("0.0.0.0", int(os.environ.get("PORT", "9000"))), Echo).serve_forever()
