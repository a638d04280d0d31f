"""What the tutorial scripts share: taking a queue's messages with basic_get, bounded."""


def drain(connection, channel, queue, expected, attempts=200):
    """basic_get (auto-ack) until `expected` messages came and the queue answers empty,
    or `attempts` polls passed. Returns (method, body) pairs in the order they came."""
    got = []
    for _ in range(attempts):
        method, _, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is None:
            if len(got) >= expected:
                break
            connection.sleep(0.05)
            continue
        got.append((method, body.decode()))
    return got
