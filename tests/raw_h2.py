"""A unary gRPC call made by hand over HTTP/2 (h2), for metadata no gRPC library will send (bytes
outside printable ASCII in a value)."""

from __future__ import annotations

import socket
import struct

import h2.config
import h2.connection
import h2.events


def raw_grpc_call(
    port: int,
    method: str,
    body: bytes,
    metadata: list[tuple[bytes, bytes]],
    timeout: float = 10.0,
    source: str | None = None,
    flag: int = 0,
) -> dict[bytes, bytes]:
    """Send one gRPC call to ``127.0.0.1:port`` with ``metadata`` as given, from the loopback address
    ``source`` when given (127.0.0.2 and so on), its message flagged ``flag`` (1: compressed); the
    answer's headers and trailers in one dict (``grpc-status``, ``grpc-message``, the axon's keys)."""
    config = h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    connection = h2.connection.H2Connection(config)
    bind = (source, 0) if source is not None else None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=bind) as sock:
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", method.encode()),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *metadata,
        ]
        connection.send_headers(stream, headers)
        connection.send_data(stream, struct.pack(">BI", flag, len(body)) + body, end_stream=True)
        sock.sendall(connection.data_to_send())
        answer: dict[bytes, bytes] = {}
        while True:
            data = sock.recv(65536)
            if not data:
                return answer
            for event in connection.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    answer.update((bytes(k), bytes(v)) for k, v in event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return answer
            sock.sendall(connection.data_to_send())
