#!/usr/bin/env python3
"""A lossy, delaying IP packet relay between two TUN devices, for the benchmarks.

The kernel here has no netem, so `scripts/bench/net.sh` builds the link itself:
two network namespaces, each with one end of this relay (a TUN device) as its
only route to the other. Every IP packet, TCP or UDP alike, crosses this
process: it is dropped with probability LOSS (each direction, independently)
or held for DELAY_MS and passed on in order. Both protocols therefore see the
same link, and TCP recovers losses with its own machinery (SACK, RACK, RTO) as
it would on a real lossy path; a TCP proxy could not drop anything.

Usage: tunrelay.py DEV_A DEV_B LOSS DELAY_MS SEED
Creates the two TUN devices (in the caller's namespace), prints "ready" and
relays until killed; the caller moves the devices into their namespaces (an
open TUN device may change namespace and keeps its file descriptor).
At exit (SIGTERM) prints the counts of packets relayed and dropped.
"""

import collections
import fcntl
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    dev_a, dev_b, loss, delay_ms, seed = sys.argv[1:6]
    loss = float(loss)
    delay = float(delay_ms) / 1000.0
    rng = random.Random(int(seed))
    a, b = open_tun(dev_a), open_tun(dev_b)
    peer = {a: b, b: a}
    # Per direction, packets in the order they arrived, each with its due time:
    # a constant delay never reorders (QUIC and TCP would both read reordering as loss).
    queues = {a: collections.deque(), b: collections.deque()}  # keyed by the destination fd
    stats = {"relayed": 0, "dropped": 0, "overflow": 0}

    def stop(*_):
        print("relayed=%d dropped=%d" % (stats["relayed"], stats["dropped"]), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    poll = select.epoll()
    poll.register(a, select.EPOLLIN)
    poll.register(b, select.EPOLLIN)
    while True:
        now = time.monotonic()
        for dst, q in queues.items():
            while q and q[0][0] <= now:
                _, pkt = q.popleft()
                try:
                    os.write(dst, pkt)
                    stats["relayed"] += 1
                except OSError:
                    # Queue full, or the device not up yet (EIO): lost, as on a wire.
                    stats["overflow"] += 1
        due = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min(due) - time.monotonic()) if due else 1.0
        for fd, _ in poll.poll(timeout):
            # Drain what is there; a burst must not wait for the next poll.
            for _ in range(256):
                try:
                    pkt = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if rng.random() < loss:
                    stats["dropped"] += 1
                    continue
                queues[peer[fd]].append((time.monotonic() + delay, pkt))


if __name__ == "__main__":
    main()
