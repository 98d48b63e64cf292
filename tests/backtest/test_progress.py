"""The progress bar draws on a real terminal (a pty) and stays silent on a pipe or a file."""

from __future__ import annotations

import io
import os

from hftbot.backtest.progress import ProgressBar


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):  # nothing more; EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        out += chunk
    return out.decode().replace("\r\n", "\n")  # the terminal's own newline translation


def test_draws_on_a_terminal_and_ends_the_line():
    master, slave = os.openpty()
    clock = iter([0.0, 0.5, 0.55, 1.0, 2.0, 2.0]).__next__
    try:
        with os.fdopen(slave, "w", closefd=True) as tty:
            bar = ProgressBar("replay", stream=tty, min_interval_s=0.1, clock=clock)  # t0 = 0.0
            assert bar.enabled
            bar(1_000_000, 4_000_000)  # t 0.5: drawn, 2 M ev/s
            bar(1_100_000, 4_000_000)  # t 0.55: too soon, skipped
            bar(4_000_000, 4_000_000)  # t 1.0: the end is always drawn
            bar.close()  # t 2.0
        text = read_all(master)
    finally:
        os.close(master)
    lines = text.split("\r")
    drawn = [x for x in lines if x.strip()]
    assert len(drawn) == 3, text  # two calls drawn + the final line
    assert " 25.0%" in drawn[0] and "1.0M/4.0M" in drawn[0] and "2.0M ev/s" in drawn[0] and "eta 0:01" in drawn[0]
    assert "1.1M" not in text  # the skipped call
    assert "100.0%" in drawn[1] and "#" * 30 in drawn[1]
    assert text.endswith("\n")


def test_silent_when_not_a_terminal(tmp_path):
    buf = io.StringIO()
    bar = ProgressBar(stream=buf)
    bar(5, 10)
    bar(10, 10)
    bar.close()
    assert not bar.enabled and buf.getvalue() == "" and bar.done == 10
    with open(tmp_path / "log.txt", "w") as fh:
        ProgressBar(stream=fh)(1, 2)
    assert (tmp_path / "log.txt").read_text() == ""
    r, w = os.pipe()
    with os.fdopen(w, "w") as pipe:
        ProgressBar(stream=pipe)(1, 2)
    assert read_all(r) == ""
    os.close(r)


def test_an_unknown_total_shows_the_count_and_rate():
    clock = iter([0.0, 2.0]).__next__
    bar = ProgressBar("w01", stream=io.StringIO(), unit="frames", clock=clock)
    bar.done, bar.total = 3_000_000, 0
    assert bar.line(2.0) == "w01  3.0M frames  1.5M frames/s  0:02"
