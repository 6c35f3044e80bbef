"""The worker's signed POST over a real socket: a connection that breaks before the answer is tried once
more at once (a keep-alive connection the receiver closed as it was reused looks exactly like this)."""
from __future__ import annotations

import socket
import threading

from workers import outbound


def test_a_connection_broken_before_the_answer_is_tried_once_more():
    """Given a receiver that reads the first request and hangs up without answering, then answers 204,
    When a delivery is posted, Then it is acknowledged (204) and the receiver saw the same event twice."""
    seen: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        for answer in (None, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"):
            conn, _ = server.accept()
            with conn:
                seen.append(conn.recv(65536))
                if answer:
                    conn.sendall(answer)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    answer = outbound.post_signed(f"http://127.0.0.1:{port}/hook", ["whsec_" + "A" * 44], "evt_1", {"type": "x"})

    thread.join(10)
    server.close()
    assert answer.status_code == 204 and answer.ok
    assert len(seen) == 2 and all(b"webhook-id: evt_1" in request for request in seen)


def test_a_huge_answer_is_read_only_as_far_as_what_is_kept():
    """Given a receiver that answers 500 with a 64 MiB body, and afterwards 204 with an empty one
    When two deliveries are posted
    Then the first is the 500 with the first MAX_BODY bytes kept, and the receiver could not send most of the
    body (the worker stopped reading and dropped the connection); the second goes out on a fresh connection"""
    size = 64 * 1024 * 1024
    sent = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(f"HTTP/1.1 500 Oops\r\nContent-Length: {size}\r\n\r\n".encode())
            chunk, total = b"x" * 65536, 0
            try:
                while total < size:
                    conn.sendall(chunk)
                    total += len(chunk)
            except OSError:  # the worker hung up
                pass
            sent.append(total)
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    first = outbound.post_signed(f"http://127.0.0.1:{port}/hook", ["whsec_" + "A" * 44], "evt_1", {"type": "x"})
    second = outbound.post_signed(f"http://127.0.0.1:{port}/hook", ["whsec_" + "A" * 44], "evt_2", {"type": "x"})

    thread.join(30)
    server.close()
    assert first.status_code == 500 and len(first.body) == outbound.MAX_BODY and first.error.startswith("HTTP 500")
    assert sent and sent[0] < size
    assert second.status_code == 204
