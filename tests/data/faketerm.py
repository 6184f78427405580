#!/usr/bin/python3
"""faketerm.py - runs a command on a pseudo-terminal that answers terminal queries the way a real
terminal did (answers recorded in ../shared/TERMINALS.md), so mixel's detection is tested end to
end (raw mode, query + DA1, time limits) without X. Python stdlib only.

usage: faketerm.py PROFILE OUT -- COMMAND [ARGS...]

PROFILE: xterm-vt340, xterm-420, mlterm (its broken XTSMGRAPHICS; no pixel size in TIOCGWINSZ so
the CSI 16 t path runs), tmux (DA1 without sixel, 18 t swapped), silent (answers nothing), garbage
(answers DA1 with junk), interrupt (Ctrl-C instead of an answer), split (xterm-vt340 whose DA1
arrives in two pieces 50 ms apart). Everything the command writes goes to OUT; the queries seen
are listed on stdout, one a line, as Python reprs, then "echo: on|off" (the terminal's echo flag
after the command ended, i.e. whether it restored the mode). Exits with the command's status (124
when it ran over 20 s; 128 + N when signal N ended it).
"""
import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time

DA1_VT340 = b"\x1b[?63;1;2;4;6;9;15;16;22;28c"
PROFILES = {
    # (rows, cols, xpix, ypix), {query: answer}
    "xterm-vt340": ((40, 120, 964, 684), {
        b"\x1b[c": DA1_VT340,
        b"\x1b]11;?\x1b\\": b"\x1b]11;rgb:ffff/ffff/ffff\x1b\\",  # xterm's white background
        b"\x1b[?1;1;0S": b"\x1b[?1;0;1024S",
        b"\x1b[?2;1;0S": b"\x1b[?2;0;960;680S",
    }),
    "xterm-420": ((24, 80, 644, 412), {
        b"\x1b[c": b"\x1b[?64;1;2;6;9;15;16;17;18;21;22;28c",
        b"\x1b]11;?\x1b\\": b"\x1b]11;rgb:ffff/ffff/ffff\x1b\\",
        b"\x1b[?1;1;0S": b"\x1b[?1;3;0S",
        b"\x1b[?2;1;0S": b"\x1b[?2;3;0S",
    }),
    "mlterm": ((40, 120, 0, 0), {
        b"\x1b[c": b"\x1b[?63;1;2;3;4;6;7;15;18;22;29c",
        b"\x1b[?1;1;0S": b"\x1b[?1;0;1024S",
        b"\x1b[?2;1;0S": b"\x1b[?1;3;0S",
        b"\x1b[14t": b"\x1b[4;760;1200t",
        b"\x1b[16t": b"\x1b[6;19;10t",
        b"\x1b[18t": b"\x1b[8;40;120t",
    }),
    "tmux": ((39, 120, 960, 663), {
        b"\x1b[c": b"\x1b[?1;2c",
        b"\x1b[18t": b"\x1b[8;120;39t",
    }),
    "silent": ((24, 80, 0, 0), {}),
    "interrupt": ((24, 80, 0, 0), {b"\x1b[c": b"\x03"}),  # the user hits Ctrl-C while asked
    "garbage": ((24, 80, 0, 0), {b"\x1b[c": b"\x1b[?6x;\x00\xff\x1b[zz"}),
    "split": ((40, 120, 964, 684), {
        b"\x1b[c": (DA1_VT340[:9], DA1_VT340[9:]),
        b"\x1b]11;?\x1b\\": (b"\x1b]11;rgb:ff", b"ff/ffff/ffff\x1b\\"),
        b"\x1b[?1;1;0S": b"\x1b[?1;0;1024S",
        b"\x1b[?2;1;0S": b"\x1b[?2;0;960;680S",
    }),
}
# CSI sequences that are queries (the rest of the output is the picture)
QUERY = re.compile(rb"\x1b\[(?:c|\?[12];1;0S|1[468]t)|\x1b\]11;\?\x1b\\")


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--" or sys.argv[1] not in PROFILES:
        print(__doc__)
        return 2
    (rows, cols, xp, yp), answers = PROFILES[sys.argv[1]]
    out = open(sys.argv[2], "wb")
    pid, fd = pty.fork()
    if pid == 0:
        # the size is set on the child's side before exec: no race with its first TIOCGWINSZ
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xp, yp))
        os.execvp(sys.argv[4], sys.argv[4:])
    pending = b""
    deadline = time.time() + 20
    status = None
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                break
            out.write(data)
            pending += data
            # answer complete queries in order; keep a possible partial one for the next read
            pos = 0
            for m in QUERY.finditer(pending):
                q = m.group(0)
                print(repr(q))
                a = answers.get(q)
                if isinstance(a, tuple):
                    os.write(fd, a[0])
                    time.sleep(0.05)
                    os.write(fd, a[1])
                elif a:
                    os.write(fd, a)
                pos = m.end()
            last_esc = pending.rfind(b"\x1b", pos)
            pending = pending[last_esc:] if last_esc >= 0 and len(pending) - last_esc < 16 else b""
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            # drain what is left
            while select.select([fd], [], [], 0.05)[0]:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                out.write(data)
            break
    out.close()
    try:
        lflag = termios.tcgetattr(fd)[3]
        print("echo: %s" % ("on" if lflag & termios.ECHO else "off"))
    except termios.error:
        print("echo: unknown")
    while status is None and time.time() < deadline:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        else:
            time.sleep(0.02)
    if status is None:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except OSError:
            pass
        return 124
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
