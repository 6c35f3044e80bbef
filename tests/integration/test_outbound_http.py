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
