#!/usr/bin/env python3
"""A listening client that records when each audio frame arrives.

    wanprobe.py HOST PORT SECONDS [PATH]

Opens the WebSocket stream (docs/CONTRACT.md: one binary message per frame, u64 BE server
timestamp in ms + codec byte + audio), and prints one JSON line:
{"t": [arrival ms since the first frame...], "ts": [server timestamp ms...], "error": ...}.
Arrival is taken when the message is complete in our buffer (the socket is read as soon as
anything comes, like a browser's network thread). It sends nothing after the handshake, as
the browser module sends nothing but a few reports.
"""
import base64
import json
import os
import socket
import struct
import sys
import time


def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/audio"
    out = {"t": [], "ts": [], "error": None}
    try:
        run(host, port, seconds, path, out)
    except Exception as e:  # reported with what was recorded so far
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)


def run(host, port, seconds, path, out):
    s = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status + " ":
        raise ConnectionError(f"handshake refused: {status}")
    s.settimeout(0.5)
    t0 = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        while True:  # every complete frame in the buffer
            if len(buf) < 2:
                break
            op, n, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, pos = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, pos = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < pos + n:
                break
            payload, buf = buf[pos:pos + n], buf[pos + n:]
            if op == 0x2 and len(payload) >= 9:
                now = time.monotonic()
                if t0 is None:
                    t0 = now
                out["t"].append(round((now - t0) * 1000, 2))
                out["ts"].append(struct.unpack(">Q", payload[:8])[0])
            elif op == 0x8:
                raise ConnectionError("the server closed the stream")
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    s.close()


if __name__ == "__main__":
    main()
