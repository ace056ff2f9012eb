"""A TCP proxy in front of PostgreSQL that passes everything but notifications.

What a worker behind a transaction-mode pooler (PgBouncer pool_mode=transaction, Supabase's
port 6543) sees: queries work, `LISTEN` succeeds, and no notification ever arrives, because the
server session that LISTENed went back to the pool after the transaction and what reaches it
is not forwarded. No such pooler runs in the tests, so this proxy produces the same symptom on a
real server: it reads the server's messages (type byte, int32 length, body) and drops every
NotificationResponse ('A'). The client must not ask for TLS or GSS encryption
(`sslmode=disable gssencmode=disable`: `url` below adds them), so every byte from the server
is a framed message."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg.conninfo import conninfo_to_dict, make_conninfo

NOTIFICATION_RESPONSE = b"A"


def _pipe_raw(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src, dst)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _pipe_dropping_notifications(server: socket.socket, client: socket.socket) -> None:
    try:
        while True:
            header = _recv_exact(server, 5)
            (length,) = struct.unpack("!I", header[1:])
            body = _recv_exact(server, length - 4)
            if header[:1] != NOTIFICATION_RESPONSE:
                client.sendall(header + body)
    except (OSError, ConnectionError):
        pass
    finally:
        _close(server, client)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def _connect(host: str, port: int) -> socket.socket:
    if host.startswith("/"):  # a Unix socket directory (the embedded server's)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(f"{host}/.s.PGSQL.{port}")
        return sock
    return socket.create_connection((host, port))


@contextmanager
def notification_dropping_proxy(database_url: str) -> Iterator[str]:
    """Yields a URL of the same database, reached through the proxy."""
    params = conninfo_to_dict(database_url)
    host, port_of_server = str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = _connect(host, port_of_server)
            threading.Thread(target=_pipe_raw, args=(client, server), daemon=True).start()
            threading.Thread(
                target=_pipe_dropping_notifications, args=(server, client), daemon=True
            ).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    params.update(host="127.0.0.1", port=str(port), sslmode="disable", gssencmode="disable")
    try:
        yield make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    finally:
        stop.set()
        listener.close()
