"""A deployment's server.log on disk: rotated by copy-and-truncate while its writers keep
appending, and read back (`mllib deploy logs`) across the rotated copies: every line once, in
order, with --tail and --since, and a follower that carries on through a rotation."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from mllib.serving.logs import follow, rotate, rotated


def write(path: Path, number: int, second: int) -> None:
    line = {"time": f"2026-12-07T10:00:{second:02d}.000Z", "n": number}
    with open(path, "ab") as handle:  # O_APPEND, as a server's processes hold it
        handle.write(json.dumps(line).encode() + b"\n")


def numbers(lines) -> list[int]:
    return [json.loads(line)["n"] for line in lines]


def test_rotation_keeps_the_newest_copies_and_every_line_is_read_once(tmp_path):
    log = tmp_path / "server.log"
    assert rotate(log, max_bytes=10, keep=2) is False  # no log yet
    for n in range(30):
        write(log, n, n)
        rotate(log, max_bytes=200, keep=2)
    assert [p.name for p in rotated(log)] == ["server.log.2", "server.log.1"]
    shown = numbers(follow(log, follow=False))
    assert shown == sorted(shown) and len(shown) == len(set(shown)) and shown[-1] == 29
    assert shown[0] > 0  # the oldest copy past log_keep is gone
    assert numbers(follow(log, follow=False, tail=4)) == [26, 27, 28, 29]
    assert numbers(follow(log, follow=False, since="2026-12-07T10:00:27.000Z")) == [27, 28, 29]
    assert rotate(log, max_bytes=0, keep=2) is False  # 0: never


def test_a_follower_carries_on_through_a_rotation(tmp_path):
    log = tmp_path / "server.log"
    write(log, 0, 0)
    seen: list[bytes] = []
    done = threading.Event()
    reader = threading.Thread(
        target=lambda: seen.extend(
            follow(log, follow=True, tail=1, alive=lambda: not done.is_set(), poll_s=0.02)
        )
    )
    reader.start()
    time.sleep(0.2)
    write(log, 1, 1)
    write(log, 2, 2)
    assert rotate(log, max_bytes=1, keep=3)  # may come before the follower read 1 and 2
    write(log, 3, 3)
    time.sleep(0.3)
    done.set()
    reader.join()
    assert numbers(seen) == [0, 1, 2, 3]
