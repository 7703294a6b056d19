"""Prints N (default 1) distinct free TCP ports on 127.0.0.1, one per line.

All N sockets stay bound until every port is chosen, so one call never hands out the same port
twice (separate calls can: a port released by one is free for the next).
"""
import socket
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
held = []
for _ in range(count):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
for s in held:
    print(s.getsockname()[1])
