"""netreach testbed: a pod's "app" process.

Usage: app.py listen READY_FILE IP SPEC...   SPEC = tcp:PORT | udp:PORT, optionally @ADDR
                                             (bind ADDR instead of IP: a mesh proxy on 127.0.0.1)
       app.py servfail READY_FILE IP          (DNS: answers every query with SERVFAIL)

Binds every listener on IP (in the pod's network namespace, where `ip netns exec` started it),
creates READY_FILE, then serves: TCP connections are accepted and closed at once, UDP datagrams
are echoed back. Exits when its stdin reaches end of file (the testbed holds the other end, so
this happens when the testbed or its process goes away) or when its parent changes. Quiet: it
writes nothing unless it fails to start.
"""

import os
import select
import socket
import sys


def servfail(query):
    """The query turned into a SERVFAIL answer (QR=1, RA=1, RCODE=2), or None if too short."""
    if len(query) < 12:
        return None
    return query[:2] + bytes([query[2] | 0x80, 0x80 | 2]) + query[4:]


def main():
    mode, ready, ip = sys.argv[1], sys.argv[2], sys.argv[3]
    specs = ["udp:53", "tcp:53"] if mode == "servfail" else sys.argv[4:]
    parent = os.getppid()
    tcp, udp = {}, {}
    for spec in specs:
        spec, _, addr = spec.partition("@")
        proto, port = spec.split(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr or ip, int(port)))
        if proto == "tcp":
            s.listen(128)
            tcp[s.fileno()] = s
        else:
            udp[s.fileno()] = s
        s.setblocking(False)
    os.close(os.open(ready, os.O_CREAT | os.O_WRONLY, 0o644))

    poller = select.poll()
    poller.register(0, select.POLLIN | select.POLLHUP)
    for fd in list(tcp) + list(udp):
        poller.register(fd, select.POLLIN)
    while True:
        if os.getppid() != parent:
            return
        for fd, ev in poller.poll(500):
            if fd == 0:
                if not os.read(0, 4096):
                    return
            elif fd in tcp:
                serve_tcp(tcp[fd], mode)
            elif fd in udp:
                serve_udp(udp[fd], mode)


def serve_tcp(listener, mode):
    for _ in range(64):
        try:
            conn, _addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            if mode == "servfail":
                conn.settimeout(1.0)
                head = conn.recv(2)
                if len(head) == 2:
                    want = int.from_bytes(head, "big")
                    query = b""
                    while len(query) < want:
                        chunk = conn.recv(want - len(query))
                        if not chunk:
                            break
                        query += chunk
                    answer = servfail(query)
                    if answer:
                        conn.sendall(len(answer).to_bytes(2, "big") + answer)
        except OSError:
            pass
        finally:
            conn.close()


def serve_udp(sock, mode):
    for _ in range(64):
        try:
            data, addr = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue
        answer = servfail(data) if mode == "servfail" else data
        if answer is not None:
            try:
                sock.sendto(answer, addr)
            except OSError:
                pass


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
