"""The parker (``ollama_deck.parking``) on its own, under gevent in a child process: a
socket that refuses what it is sent gets all of it later, in order, while another parked
stream is served meanwhile; a closed hub ends both with their closing chunk; no more are
parked than the limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter: gevent's patching must come before anything else.
CHILD = r"""
from gevent import monkey; monkey.patch_all()
import json, socket, sys
import gevent
from ollama_deck.parking import Parker
from ollama_deck.services.events import EventHub, make_event
from ollama_deck.services.streams import Stream, Wait

EVENTS, SIZE = int(sys.argv[1]), int(sys.argv[2])
hub = EventHub(heartbeat_seconds=3600)

def frames():
    position = hub.position()
    yield b"start\n"
    while True:
        if hub.position() <= position:
            if hub.closed:
                return
            yield Wait(position)
            if hub.position() <= position:
                if hub.closed:
                    return
                yield b"beat\n"
                continue
        events, position, _ = hub.read(position)
        yield b"".join(e.frame for e in events)

class Response:  # what the parker uses of gunicorn's
    def __init__(self, sock):
        self.sock, self.chunked, self.headers_sent, self.closed = sock, True, True, False
    def force_close(self):
        self.closed = True

parker = Parker(limit=2)
pairs = []
for small in (True, False):
    ours, theirs = socket.socketpair()
    if small:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    response = Response(ours)
    stream = Stream(frames(), hub, park=lambda s, p, r=response: parker.park(r, s, p))
    first = next(stream)  # what gunicorn writes before the stream waits
    ours.sendall(b"%X\r\n%s\r\n" % (len(first), first))
    assert next(stream, None) is None and stream.parked and response.closed
    ours.close()  # as gunicorn closes its socket: the parked duplicate stays open
    theirs.settimeout(20)  # a lost write fails the test instead of hanging it
    pairs.append(theirs)
stalled, reader = pairs
extra, _ = socket.socketpair()
over = Stream(frames(), hub)
next(over)
beyond_limit_parked = parker.park(Response(extra), over, hub.position())

def read_all(sock, until):
    data = bytearray()
    while not data.endswith(until):
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)

payload = "x" * SIZE
sent = []
for seq in range(1, EVENTS + 1):
    event = make_event(seq, "op", "log", {"seq": seq, "text": payload})
    sent.append(event.frame)
    hub.publish([event])
    if seq % 50 == 0:
        gevent.sleep(0.001)
# The other stream was served while the stalled one read nothing.
fast = read_all(reader, sent[-1] + b"\r\n")
hub.close()
parker.close()
rest = read_all(stalled, b"0\r\n\r\n")
tail = read_all(reader, b"0\r\n\r\n")
print(json.dumps({
    "fast": fast.decode(), "fast_tail": tail.decode(), "stalled": rest.decode(),
    "sent": b"".join(sent).decode(), "parked_after": parker.parked,
    "beyond_limit_parked": beyond_limit_parked,
}))
"""


def dechunked(raw: str) -> tuple[str, bool]:
    """The body of chunked transfer coding, and whether it ended with the closing chunk."""
    body, rest = [], raw
    while rest:
        size_line, rest = rest.split("\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return "".join(body), rest == "\r\n"
        body.append(rest[:size])
        assert rest[size : size + 2] == "\r\n"
        rest = rest[size + 2 :]
    return "".join(body), False


def test_a_stalled_socket_gets_everything_later_and_holds_nobody(tmp_path: Path) -> None:
    events, size = 2000, 1000  # 2 MB: far more than a 4 KB socket pair's buffers hold
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(events), str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    sent = found["sent"]
    fast, ended = dechunked(found["fast"] + found["fast_tail"])
    assert fast == "start\n" + sent and ended
    stalled, ended = dechunked(found["stalled"])
    assert stalled == "start\n" + sent and ended, "all of it, in order, then the end"
    assert found["parked_after"] == 0
    assert found["beyond_limit_parked"] is False, "no more parked than the limit"
