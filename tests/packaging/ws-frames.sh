#!/bin/sh
# A minimal WebSocket client for the packaging tests (python3 standard
# library only; the handshake is done by hand).
#
#   tests/packaging/ws-frames.sh URL [FRAMES [CODEC]]
#
# Connects to URL (ws://host:port/path?query), checks the 101 answer and its
# Sec-WebSocket-Accept, reads FRAMES (default 10) binary messages and checks
# the wire format: 9+ bytes, codec byte at offset 8 equal to CODEC (default
# 1 = Opus), timestamps non-decreasing.  Prints one summary line; exit 0 on
# success, 1 otherwise.  Environment: WS_ORIGIN sets an Origin header,
# WS_TIMEOUT the socket timeout in seconds (10).
exec python3 - "$@" <<'EOF'
import base64, hashlib, os, socket, struct, sys, urllib.parse

def fail(msg):
    print("ws-frames: FAIL: " + msg)
    sys.exit(1)

url = urllib.parse.urlsplit(sys.argv[1])
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 10
codec = int(sys.argv[3]) if len(sys.argv) > 3 else 1
if url.scheme != "ws":
    fail("only ws:// URLs")
host, port = url.hostname, url.port or 80
target = url.path or "/"
if url.query:
    target += "?" + url.query

try:
    sock = socket.create_connection((host, port), timeout=float(os.environ.get("WS_TIMEOUT", "10")))
except OSError as e:
    fail("connect %s:%d: %s" % (host, port, e))
key = base64.b64encode(os.urandom(16)).decode()
request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (target, host, port, key))
if os.environ.get("WS_ORIGIN"):
    request += "Origin: %s\r\n" % os.environ["WS_ORIGIN"]
sock.sendall((request + "\r\n").encode())

buf = b""
def read(n):
    global buf
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            fail("connection closed after %d bytes" % len(buf))
        buf += chunk
    data, buf = buf[:n], buf[n:]
    return data

try:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            fail("closed during the handshake: %r" % buf[:200])
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split(" ")[1:2] != ["101"]:
        fail("handshake answer: %s" % lines[0])
    headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        fail("bad Sec-WebSocket-Accept %r" % headers.get("sec-websocket-accept"))

    got, stamps, sizes = 0, [], []
    while got < frames:
        b0, b1 = read(2)
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if b1 & 0x80:
            fail("server frame is masked")
        if length == 126:
            length = struct.unpack(">H", read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", read(8))[0]
        payload = read(length)
        if opcode == 0x8:
            fail("server closed: %r" % payload[:64])
        if opcode == 0x9:  # ping: answer with a masked pong
            mask = os.urandom(4)
            sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask +
                         bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
            continue
        if opcode != 0x2:
            continue
        if length < 9:
            fail("binary message of %d bytes (< 9)" % length)
        if payload[8] != codec:
            fail("codec byte %#04x, expected %#04x" % (payload[8], codec))
        stamps.append(struct.unpack(">Q", payload[:8])[0])
        sizes.append(length - 9)
        got += 1
except socket.timeout:
    fail("timed out (%d of %d frames)" % (len(stamps) if "stamps" in dir() else 0, frames))
steps = [b - a for a, b in zip(stamps, stamps[1:])]
if any(s < 0 for s in steps):
    fail("timestamps go backwards: %r" % stamps)
print("ws-frames: ok: %d binary frames, codec %#04x, timestamps %d..%d ms, steps %s, payload %d..%d bytes"
      % (got, codec, stamps[0], stamps[-1], sorted(set(steps)), min(sizes), max(sizes)))
EOF
