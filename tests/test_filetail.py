"""mllib.filetail, the one follower of growing files (run output, events, server.log, the
dashboard's log pane), on real files: appends, a half-written line, truncation, a file replaced
by another, and copy-and-truncate rotation between two reads."""

from __future__ import annotations

import os
import shutil

from mllib.filetail import FileTail, LineTail


def append(path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_appends_are_read_once_and_a_half_line_waits(tmp_path):
    log = tmp_path / "output.log"
    lines = LineTail(log)
    assert lines.read_lines() == []  # no file yet
    append(log, b"one\ntw")
    assert lines.read_lines() == [b"one"]
    append(log, b"o\nthree\n")
    assert lines.read_lines() == [b"two", b"three"]
    assert lines.read_lines() == []


def test_a_rotation_between_reads_loses_and_repeats_nothing(tmp_path):
    log = tmp_path / "server.log"
    tail = FileTail(log)
    append(log, b"a\nb\n")
    assert tail.read() == b"a\nb\n"
    append(log, b"c\n")  # written, not read yet, then rotated away with the rest
    shutil.copyfile(log, tmp_path / "server.log.1")
    os.truncate(log, 0)
    append(log, b"d\nlonger than what was there before\n")  # past the old offset already
    assert tail.read() == b"c\nd\nlonger than what was there before\n"


def test_a_truncated_or_replaced_file_is_read_from_its_start(tmp_path):
    log = tmp_path / "events.jsonl"
    append(log, b"first\n")
    tail = FileTail(log)
    assert tail.read() == b"first\n"
    os.truncate(log, 0)  # no copy beside it: start over
    append(log, b"again\n")
    assert tail.read() == b"again\n"
    replacement = tmp_path / "new"
    replacement.write_bytes(b"other file, much longer than the first one\n")
    os.replace(replacement, log)
    assert tail.read() == b"other file, much longer than the first one\n"


def test_a_follower_starting_mid_file_sees_a_rotation_from_its_first_read(tmp_path):
    log = tmp_path / "server.log"
    append(log, b"x" * 100 + b"\n")
    tail = FileTail(log, offset=101)  # as `mllib deploy logs --follow` after printing history
    append(log, b"new\n")
    shutil.copyfile(log, tmp_path / "server.log.1")
    os.truncate(log, 0)
    assert tail.read() == b"new\n"
