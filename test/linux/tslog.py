"""Console helpers for the nested harness (run-l1.sh).

tslog.py [--qmp SOCK --silence N]
    Copy stdin to stdout, each line prefixed with the seconds since start
    ("[  12.34] "). With --qmp, if no harness line (anything but an L1
    kernel message, which a wedged L1 still prints: soft lockups, RCU
    stalls) arrives for N seconds, L1 is taken to be hung: its CPUs'
    registers are dumped through QEMU's QMP socket (HMP "info registers -a")
    and QEMU is told to quit. QEMU runs L1 without -no-reboot so that a
    reset of L1 (triple fault, panic) goes through QEMU's CPU reset, which
    -d cpu_reset logs with the CPUs' state; the second firmware banner
    (L1 booting again) makes this tell QEMU to quit.
tslog.py --l1syms LOG QEMULOG
    Print, as an l1syms= list for l1-init.sh, the L1 code addresses of a
    dead or hung L1: the RIPs of the QMP register dump in LOG and of the
    long-mode CPU resets in QEMULOG, made KASLR-independent with the _text
    and module bases L1 printed.
"""
import json
import re
import socket
import sys
import threading
import time


def qmp(sock, cmds):
    """Run each HMP command in cmds over the QMP socket; return the texts."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(sock)
    f = s.makefile("rw")
    f.readline()  # greeting
    out = []
    for cmd in [None] + cmds:
        req = {"execute": "qmp_capabilities"} if cmd is None else {
            "execute": "human-monitor-command", "arguments": {"command-line": cmd}}
        f.write(json.dumps(req) + "\n")
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if "event" not in reply:
                break
        if cmd is not None:
            out.append((cmd, reply.get("return", reply)))
    s.close()
    return out


def stamp(sock, silence):
    t0 = time.monotonic()
    last = [t0]
    out = sys.stdout.buffer

    def emit(b):
        out.write(b"[%7.2f] " % (time.monotonic() - t0) + b)
        out.flush()

    kernel = re.compile(rb"^\[ *[0-9]+\.[0-9]+\] ")

    boots = [0]

    def pump():
        for line in sys.stdin.buffer:
            if not kernel.match(line):
                last[0] = time.monotonic()
            emit(line)
            if b"SeaBIOS (version" in line:
                boots[0] += 1
                if boots[0] == 2 and sock:
                    emit(b"run-l1: L1 RESET ITSELF (firmware banner again): stopping QEMU\n")
                    try:
                        qmp(sock, ["quit"])
                    except (OSError, ValueError) as e:
                        emit(("run-l1: QMP quit failed: %s\n" % e).encode())

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    while t.is_alive():
        t.join(1)
        if sock and time.monotonic() - last[0] > silence:
            emit(b"run-l1: L1 SILENT for %ds: dumping its CPUs through QMP, then stopping QEMU\n" % silence)
            try:
                for cmd, text in qmp(sock, ["info cpus", "info registers -a"]):
                    for ln in str(text).splitlines():
                        emit(("run-l1: L1-CPUS %s| %s\n" % (cmd, ln)).encode())
                qmp(sock, ["quit"])
            except (OSError, ValueError) as e:
                emit(("run-l1: QMP dump failed: %s\n" % e).encode())
            last[0] = time.monotonic() + 3600
    t.join()


def l1syms(logpath, qlogpath):
    text, mods = None, {}
    rips = []
    with open(logpath, errors="replace") as f:
        for line in f:
            m = re.search(r"L1: _text=([0-9a-f]+) (.*)", line)
            if m:
                text = int(m.group(1), 16)
                mods = {k: int(v, 16) for k, v in re.findall(r"(\w+)@0x([0-9a-f]+)", m.group(2))}
            m = re.search(r"L1-CPUS .*\bRIP=([0-9a-f]{16})", line)
            if m:
                rips.append(int(m.group(1), 16))
    try:
        with open(qlogpath, errors="replace") as f:
            rips += [int(r, 16) for r in re.findall(r"^RIP=([0-9a-f]{16})", f.read(), re.M)]
    except OSError:
        pass
    if text is None:
        return
    items = []
    for a in rips:
        if text <= a < text + (64 << 20):
            it = "k:%08x" % ((a - text + 0xffffffff81000000) & 0xffffffff)
        else:
            below = [(b, n) for n, b in mods.items() if b <= a < b + (16 << 20)]
            if not below:
                continue
            b, n = max(below)
            it = "%s:%x" % (n, a - b)
        if it not in items:
            items.append(it)
    print(",".join(items))


def main(argv):
    if len(argv) == 3 and argv[0] == "--l1syms":
        l1syms(argv[1], argv[2])
    elif len(argv) == 4 and argv[0] == "--qmp" and argv[2] == "--silence":
        stamp(argv[1], int(argv[3]))
    elif not argv:
        stamp(None, 0)
    else:
        sys.exit("usage: tslog.py [--qmp SOCK --silence SECONDS] | --l1syms LOG QEMULOG")


if __name__ == "__main__":
    main(sys.argv[1:])
