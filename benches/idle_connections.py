"""Idle Kafka connections and one active producer (benches/idle-connections.sh).

    idle_connections.py hold HOST:PORT COUNT
        Opens COUNT TCP connections to a Kafka listener, sends each an ApiVersions v0
        request and reads its answer (so the broker has taken the connection through a
        whole request), prints "ready N" and holds them, idle, until stdin closes.
    idle_connections.py latency HOST:PORT TOPIC COUNT
        One confluent-kafka producer (acks=all, linger.ms=0) sends COUNT 1 KiB records one
        at a time, each waiting for its acknowledgement; prints one JSON line with the
        p50, p99 and max latency in ms.

Every wait is bounded: a connection or answer that takes over 10 s fails the run.
"""

import json
import socket
import struct
import sys
import time

TIMEOUT_S = 10
API_VERSIONS = 18


def api_versions_request(correlation_id: int) -> bytes:
    client_id = b"idle"
    body = struct.pack(">hhih", API_VERSIONS, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def read_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        out += chunk
    return out


def hold(address: str, count: int) -> None:
    host, port = address.rsplit(":", 1)
    sockets = []
    for i in range(count):
        s = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        s.sendall(api_versions_request(i))
        (size,) = struct.unpack(">i", read_exact(s, 4))
        answer = read_exact(s, size)
        (correlation_id, error) = struct.unpack(">ih", answer[:6])
        if correlation_id != i or error != 0:
            raise RuntimeError(f"connection {i}: correlation {correlation_id}, error {error}")
        sockets.append(s)
        if (i + 1) % 1000 == 0:
            print(f"{i + 1} connections", file=sys.stderr, flush=True)
    print(f"ready {len(sockets)}", flush=True)
    sys.stdin.read()
    for s in sockets:
        s.close()


def latency(address: str, topic: str, count: int) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": address, "acks": "all", "linger.ms": 0, "enable.idempotence": False}
    )
    value = b"x" * 1024
    took = []
    failures = []
    for _ in range(count):
        done = []
        start = time.perf_counter()
        producer.produce(topic, value, on_delivery=lambda err, _msg: done.append(err))
        deadline = start + TIMEOUT_S
        while not done and time.perf_counter() < deadline:
            producer.poll(0.001)
        if not done or done[0] is not None:
            failures.append(str(done[0]) if done else "no acknowledgement in 10 s")
            break
        took.append((time.perf_counter() - start) * 1000)
    if failures:
        raise RuntimeError(f"produce failed: {failures[0]}")
    took.sort()
    print(
        json.dumps(
            {
                "records": len(took),
                "p50_ms": round(took[len(took) // 2], 3),
                "p99_ms": round(took[min(len(took) - 1, len(took) * 99 // 100)], 3),
                "max_ms": round(took[-1], 3),
            }
        )
    )


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "hold":
        hold(sys.argv[2], int(sys.argv[3]))
    elif command == "latency":
        latency(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {command!r}")
