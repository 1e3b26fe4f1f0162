#!/usr/bin/env python3
"""Boots the vmmd test guest under QEMU and checks its serial protocol.

Usage: qemu-smoke.py [--elf PATH] [--bzimage PATH] [--quick] [-v]

Runs the protocol checks (README.md) on a 2-CPU 256 MiB microvm, a boot
matrix (-smp 1/2/4 x -m 128/256/2048), crash/reset/poweroff, the virtio-blk
checks (records written and flushed by the guest, then read from the image
with check-records.py, over a file and over nbdkit; legacy and modern
transports; polled and interrupt completion; device errors, a killed and a
stopped NBD server) and the disk throughput baseline, and reports the time
from QEMU start to GUEST-READY and QEMU's CPU use with the guest idle. Exit
status 0 only if every check passed (a check that cannot run, e.g. without
nbdkit, prints SKIP and is not counted as passed).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ELF = os.path.join(HERE, "..", "..", "build", "guest", "vmmd-testguest.elf")
DEFAULT_BZ = os.path.join(HERE, "..", "..", "build", "guest", "vmmd-testguest.bzImage")
DEFAULT_SHIM = os.path.join(HERE, "..", "..", "build", "guest", "obj", "bz64shim.elf")
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
READY_RE = (r"^GUEST-READY (vmmd-testguest boot=(\w+) cpus=(\d+) mem=(\d+)M "
            r"ram_kib=(\d+) e820=(\d+) cmdline=\"(.*)\" disks=(\d+))$")
CHECK_RECORDS = os.path.join(HERE, "check-records.py")
VERBOSE = False
ONLY = None


class Failure(Exception):
    pass


class Skip(Exception):
    pass


class Guest:
    """One QEMU process; its COM1 is on stdin/stdout, QMP on a unix socket."""

    counter = 0

    def __init__(self, kernel, smp=2, mem=256, machine="microvm", append=None, extra=()):
        Guest.counter += 1
        self.qmp_path = "/tmp/vmmd-testguest-%d-%d.qmp" % (os.getpid(), Guest.counter)
        cmd = [QEMU, "-enable-kvm", "-M", machine, "-cpu", "host,-arch-capabilities",
               "-m", str(mem), "-smp", str(smp), "-nodefaults", "-no-user-config",
               "-display", "none", "-serial", "stdio", "-kernel", kernel,
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if append is not None:
            cmd += ["-append", append]
        cmd += list(extra)
        self.lines = []  # (seconds since start, text)
        self.pos = 0
        self.cond = threading.Condition()
        self.eof = False
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for raw in self.p.stdout:
            text = raw.decode(errors="replace").rstrip("\r\n")
            with self.cond:
                self.lines.append((time.monotonic() - self.t0, text))
                if VERBOSE:
                    print("    | %7.3f %s" % (self.lines[-1][0], text))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def expect(self, pattern, timeout=5.0):
        """Returns (time, match) of the next line matching pattern; skips others."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                while self.pos < len(self.lines):
                    t, text = self.lines[self.pos]
                    self.pos += 1
                    m = rx.search(text)
                    if m:
                        return t, m
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise Failure("no line matching %r within %.1fs; last lines:\n%s" % (
                        pattern, timeout, "\n".join("  %7.3f %s" % l for l in self.lines[-15:])))
                self.cond.wait(left)

    def collect(self, seconds):
        """All lines that arrive in the next `seconds` (and any unread ones)."""
        time.sleep(seconds)
        with self.cond:
            out = self.lines[self.pos:]
            self.pos = len(self.lines)
        return out

    def send(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def cmd(self, line, pattern, timeout=5.0):
        self.send(line)
        return self.expect(pattern, timeout)

    def qmp(self, execute, **args):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(self.qmp_path)
        f = s.makefile("rw")
        json.loads(f.readline())  # greeting
        for msg in ({"execute": "qmp_capabilities"}, {"execute": execute, "arguments": args}):
            f.write(json.dumps(msg) + "\n")
            f.flush()
            while True:
                r = json.loads(f.readline())
                if "return" in r or "error" in r:
                    break
        s.close()
        if "error" in r:
            raise Failure("QMP %s: %s" % (execute, r["error"]))
        return r["return"]

    def cpu_ticks(self):
        with open("/proc/%d/stat" % self.p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def wait_exit(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        try:
            os.unlink(self.qmp_path)
        except OSError:
            pass


def ready(g, smp, mem, boot="pvh", timeout=20):
    t, m = g.expect(READY_RE, timeout)
    if m.group(2) != boot or int(m.group(3)) != smp or int(m.group(4)) != mem:
        raise Failure("READY line %r: want boot=%s cpus=%d mem=%dM" % (m.group(0), boot, smp, mem))
    return t, m


def check_basic(g, smp, mem, boot="pvh"):
    t, m = ready(g, smp, mem, boot)
    g.cmd("ping", r"^PONG$")
    g.cmd("info", r"^INFO " + re.escape(m.group(1)) + "$")
    _, c = g.cmd("cpus", r"^CPUS online=(\d+) described=(\d+)$")
    if int(c.group(1)) != smp or int(c.group(2)) != smp:
        raise Failure("cpus: %s" % c.group(0))
    g.cmd("  nosuch arg", r"^ERR unknown command: nosuch$")
    g.cmd("echo a  b", r"^ECHO a b$")
    return t


def check_hb(g):
    g.cmd("hb 100", r"^OK hb 100$")
    lines = [l for l in g.collect(1.55) if l[1].startswith("HB ")]
    nums = [int(l[1].split()[1]) for l in lines]
    if len(nums) < 13 or len(nums) > 17 or nums != list(range(nums[0], nums[0] + len(nums))):
        raise Failure("hb 100 for 1.55 s gave %r" % nums)
    gaps = [b[0] - a[0] for a, b in zip(lines, lines[1:])]
    if max(abs(x - 0.1) for x in gaps) > 0.03:
        raise Failure("hb 100 intervals %r" % [round(x, 3) for x in gaps])
    mean = (lines[-1][0] - lines[0][0]) / (len(lines) - 1)
    if abs(mean - 0.1) > 0.01:
        raise Failure("hb 100 mean interval %.4f" % mean)
    g.cmd("hb 0", r"^OK hb 0$")
    late = [l for l in g.collect(0.4) if l[1].startswith("HB ")]
    if len(late) > 1:
        raise Failure("HB after hb 0: %r" % late)
    last = int(late[-1][1].split()[1]) if late else nums[-1]
    g.cmd("hb 50", r"^OK hb 50$")
    _, m = g.expect(r"^HB (\d+)$", 1)
    if int(m.group(1)) != last + 1:
        raise Failure("hb restarted at %s after %d" % (m.group(1), last))
    g.cmd("hb 0", r"^OK hb 0$")
    g.cmd("hb", r"^ERR usage")
    return "hb ok: %d lines, mean %.1f ms, max dev %.1f ms" % (
        len(nums), mean * 1000, max(abs(x - 0.1) for x in gaps) * 1000)


def check_pause(g):
    """After a VM pause the next HB is n+1 and there is no burst."""
    g.cmd("hb 100", r"^OK hb 100$")
    _, m = g.expect(r"^HB (\d+)$", 1)
    n = int(m.group(1))
    g.qmp("stop")
    time.sleep(1.5)
    g.collect(0)
    g.qmp("cont")
    lines = [l for l in g.collect(0.55) if l[1].startswith("HB ")]
    nums = [int(l[1].split()[1]) for l in lines]
    g.cmd("hb 0", r"^OK hb 0$")
    if not nums or nums[0] > n + 2 or len(nums) > 7:
        raise Failure("after pause at HB %d: %r" % (n, nums))
    return "pause ok: HB %d, then %r" % (n, nums)


def check_mem(g, mib, ram_mib):
    t0 = time.monotonic()
    g.cmd("mem start %d" % mib, r"^OK mem start %d$" % mib, timeout=60)
    init = time.monotonic() - t0
    g.cmd("ping", r"^PONG$")
    time.sleep(1.0)
    _, m = g.cmd("mem status", r"^MEM running passes=(\d+)$")
    passes = int(m.group(1))
    if passes < 2:
        raise Failure("mem: only %d passes in 1 s" % passes)
    _, m = g.cmd("mem check", r"^MEMCHECK ok pages=(\d+) passes=(\d+)$", timeout=20)
    if int(m.group(1)) != mib * 256:
        raise Failure("mem check: %s" % m.group(0))
    g.cmd("mem stop", r"^OK mem stop$")
    g.cmd("mem check", r"^MEMCHECK ok pages=%d " % (mib * 256))
    _, m = g.cmd("mem status", r"^MEM stopped passes=(\d+)$")
    g.cmd("mem start %d" % mib, r"^OK mem start %d$" % mib)  # resumes
    time.sleep(0.2)
    g.cmd("mem stop", r"^OK mem stop$")
    g.cmd("mem check", r"^MEMCHECK ok ")
    g.cmd("mem start %d" % (ram_mib + 1), r"^ERR region exceeds RAM$")
    g.cmd("mem start 0", r"^ERR bad MiB$")
    g.cmd("mem frob", r"^ERR usage")
    return "mem %d MiB ok: init %.2f s, %d passes/s" % (mib, init, passes)


def check_memcheck_detects(g, mib=16):
    """mem check must notice a page that breaks the pattern."""
    g.cmd("mem start %d" % mib, r"^OK mem start %d$" % mib, timeout=30)
    time.sleep(0.2)
    g.cmd("mem stop", r"^OK mem stop$")
    _, m = g.cmd("mem peek 0", r"^MEM page=0 value=(\d+)$")
    v = int(m.group(1))
    g.cmd("mem poke 100 %d" % ((v + 5) % 256), r"^OK mem poke$")
    _, m = g.cmd("mem check", r"^MEMCHECK bad page=100 value=(\d+) expected=(\d+)$")
    g.cmd("mem poke 100 %d" % v, r"^OK mem poke$")
    last = mib * 256 - 1
    _, m = g.cmd("mem peek %d" % last, r"^MEM page=%d value=(\d+)$" % last)
    w = int(m.group(1))
    g.cmd("mem poke %d %d" % (last, (v + 1) % 256), r"^OK mem poke$")
    g.cmd("mem check", r"^MEMCHECK bad page=%d " % last)
    g.cmd("mem poke %d %d" % (last, w), r"^OK mem poke$")
    g.cmd("mem check", r"^MEMCHECK ok ")
    return "memcheck detects a bad page"


def check_dirty(g):
    rates = []
    for pps in (500, 20000, 200000):
        t0, _ = g.cmd("dirty %d 32" % pps, r"^OK dirty %d 32$" % pps)
        time.sleep(1.0)
        g.cmd("ping", r"^PONG$")
        t1, m = g.cmd("dirty status", r"^DIRTY running pps=%d mib=32 written=(\d+)$" % pps)
        rate = int(m.group(1)) / (t1 - t0)
        if abs(rate - pps) > 0.1 * pps + 20:
            raise Failure("dirty %d: measured %.0f pages/s" % (pps, rate))
        rates.append("%d->%.0f" % (pps, rate))
    g.cmd("dirty 0", r"^OK dirty 0$")
    g.cmd("dirty status", r"^DIRTY stopped ")
    g.cmd("dirty 5", r"^ERR usage")
    g.cmd("dirty 100 100000", r"^ERR")
    return "dirty rates ok (%s)" % ", ".join(rates)


def check_lines(g, n=200):
    t0 = time.monotonic()
    g.cmd("lines %d" % n, r"^OK lines$", timeout=30)
    dt = time.monotonic() - t0
    return "console: %d lines of 52 bytes in %.3f s (%.0f µs/line)" % (n, dt, dt / n * 1e6)


def idle_cpu(g, seconds=5.0):
    hz = os.sysconf("SC_CLK_TCK")
    a = g.cpu_ticks()
    time.sleep(seconds)
    b = g.cpu_ticks()
    return 100.0 * (b - a) / hz / seconds


# ---- virtio-blk ------------------------------------------------------------

DISK_RE = (r"^GUEST-DISK index=(\d+) base=(0x[0-9a-f]+) irq=(\d+) capacity=(\d+) "
           r"ro=([01]) id=(\S*)$")
MODERN = ["-global", "virtio-mmio.force-legacy=false"]  # QEMU 7.2 defaults to legacy


def blk(src, idx, serial=None, opts=""):
    """-drive/-device arguments for one virtio-blk-device."""
    dev = "virtio-blk-device,drive=d%d" % idx + (",serial=%s" % serial if serial else "")
    return ["-drive", "id=d%d,file=%s,format=raw,if=none%s" % (idx, src, opts), "-device", dev]


def disks_at_boot(g, n, timeout=20):
    """Parses the GUEST-DISK lines up to GUEST-READY, which must say disks=n."""
    found = []
    while True:
        _, m = g.expect(r"^(GUEST-DISK |GUEST-READY )", timeout)
        line = m.string
        if line.startswith("GUEST-READY"):
            r = re.match(READY_RE, line)
            if not r or int(r.group(8)) != n or len(found) != n:
                raise Failure("%r after %d GUEST-DISK lines: want disks=%d" % (line, len(found), n))
            return found
        d = re.match(DISK_RE, line)
        if not d or int(d.group(1)) != len(found):
            raise Failure("bad disk line %r" % line)
        found.append(d)


def disk_irq_count(g, disk=0):
    _, m = g.cmd("disk info %d" % disk, r"^DISK-INFO index=%d .* irqs=(\d+)$" % disk)
    return int(m.group(1))


def write_records(g, disk, first, count, flush=True, timeout=60):
    g.cmd("disk write %d %d %d%s" % (disk, first, count, " flush" if flush else ""),
          r"^OK disk write %d %d %d flushed=%d$" % (disk, first, count, int(flush)), timeout)


def verify_records(g, disk, first, count, timeout=60):
    g.cmd("disk verify %d %d %d" % (disk, first, count),
          r"^VERIFY ok disk=%d records=%d$" % (disk, count), timeout)


def check_image(path, ranges, rest_zero=True):
    args = [sys.executable, CHECK_RECORDS, path] + ["%d:%d:%d" % r for r in ranges]
    if rest_zero:
        args.append("--rest-zero")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure("check-records %s: %s %s" % (" ".join(args[3:]), r.stdout.strip(), r.stderr.strip()))
    return r.stdout.strip()


def poweroff_wait(g):
    g.cmd("poweroff", r"^GUEST-POWEROFF$")
    if g.wait_exit(10) is None:
        raise Failure("QEMU still running 10 s after poweroff")


def record_workload(g, disk=0):
    """Records in poll and irq mode, rewrites, negative verifies. Returns the
    ranges (first, count, seed) the image must hold, later ones winning."""
    g.cmd("disk mode poll", r"^OK disk mode poll$")
    write_records(g, disk, 0, 2048)
    verify_records(g, disk, 0, 2048)
    g.cmd("disk verify %d 0 2049" % disk, r"^VERIFY bad disk=%d record=2048 reason=magic$" % disk)
    g.cmd("disk seed 77", r"^OK disk seed 77$")
    write_records(g, disk, 5000, 300, flush=False)
    g.cmd("disk flush %d" % disk, r"^OK disk flush$")
    verify_records(g, disk, 5000, 300)
    g.cmd("disk verify %d 0 1" % disk, r"^VERIFY bad disk=%d record=0 reason=seed$" % disk)
    g.cmd("disk mode irq", r"^OK disk mode irq$")
    irqs0 = disk_irq_count(g, disk)
    g.cmd("disk seed 1", r"^OK disk seed 1$")
    write_records(g, disk, 10000, 700)
    g.cmd("disk seed 5", r"^OK disk seed 5$")
    write_records(g, disk, 1000, 24)
    verify_records(g, disk, 1000, 24)
    g.cmd("disk seed 1", r"^OK disk seed 1$")
    g.cmd("disk verify %d 0 2048" % disk, r"^VERIFY bad disk=%d record=1000 reason=seed$" % disk)
    verify_records(g, disk, 10000, 700)
    _, m = g.cmd("disk bench %d rand read 4" % disk,
                 r"^DISKBENCH disk=%d mode=rand op=read bytes=4194304 usec=\d+ iops=(\d+) "
                 r"mibps=[\d.]+ qd=1 completion=irq irqs=(\d+)$" % disk, 60)
    irqs = disk_irq_count(g, disk) - irqs0
    if irqs <= 0 or int(m.group(2)) <= 0:
        raise Failure("irq mode: no disk interrupt taken (%d)" % irqs)
    if int(m.group(1)) < 300:
        raise Failure("irq mode: %s IOPS at qd 1, as if woken by the 10 ms tick only" % m.group(1))
    g.cmd("disk mode poll", r"^OK disk mode poll$")
    _, m = g.cmd("disk bench %d rand read 1" % disk, r"^DISKBENCH .* completion=poll irqs=(\d+)$", 60)
    if int(m.group(1)) != 0:
        raise Failure("poll mode took %s disk interrupts" % m.group(1))
    return [(0, 2048, 1), (5000, 300, 77), (10000, 700, 1), (1000, 24, 5)], irqs


def disk_checks(a, results):
    tmp = tempfile.mkdtemp(prefix="vmmd-testguest-")

    def image(name, mib=64):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.truncate(mib << 20)
        return path

    def file_modern():
        rw, ro = image("rw.img"), image("ro.img", 8)
        g = Guest(a.elf, 2, 256, extra=MODERN + blk(rw, 0, "vmmd-rw") +
                  blk(ro, 1, "vmmd-ro", ",readonly=on"))
        try:
            found = disks_at_boot(g, 2)
            by_id = {d.group(6): d for d in found}
            if set(by_id) != {"vmmd-rw", "vmmd-ro"}:
                raise Failure("disk ids %r" % sorted(by_id))
            r, o = by_id["vmmd-rw"], by_id["vmmd-ro"]
            if (r.group(4), r.group(5), o.group(4), o.group(5)) != ("131072", "0", "16384", "1"):
                raise Failure("capacity/ro: %s / %s" % (r.group(0), o.group(0)))
            for d in found:  # QEMU's microvm: 512-byte transports from 0xfeb00000, IRQ 24+i
                i = (int(d.group(2), 16) - 0xfeb00000) // 512
                if int(d.group(2), 16) != 0xfeb00000 + 512 * i or int(d.group(3)) != 24 + i:
                    raise Failure("base/irq: %s" % d.group(0))
            di, oi = int(r.group(1)), int(o.group(1))
            g.cmd("disk list", r"^GUEST-DISK index=0 ")
            g.expect(r"^GUEST-DISK index=1 ")
            g.expect(r"^OK disk list$")
            g.cmd("disk id %d" % oi, r"^DISK-ID vmmd-ro$")
            g.cmd("disk info %d" % di, r"^DISK-INFO index=%d version=2 .* queue=64 slots=16 " % di)
            ranges, irqs = record_workload(g, di)
            # device errors are reported, and the driver keeps working
            g.cmd("disk write %d 0 1 flush" % oi, r"^DISK-ERROR op=write disk=%d sector=0 status=ioerr$" % oi)
            g.cmd("disk verify %d 0 1" % oi, r"^VERIFY bad disk=%d record=0 reason=magic$" % oi)
            g.cmd("disk op %d 127" % di, r"^DISK-OP type=127 status=unsupp$")
            g.cmd("disk write %d 131072 1" % di, r"^ERR range exceeds capacity$")
            g.cmd("disk write 2 0 1", r"^ERR no such disk$")
            g.cmd("disk bench %d seq read 0" % di, r"^ERR usage")
            g.cmd("disk frob", r"^ERR usage")
            g.cmd("disk timeout 0", r"^ERR usage")
            _, m = g.cmd("diag", r"^DIAG .* disk_us=(\d+) disk_irqs=(\d+)$")
            # reset: the guest finds the disks again, the data is there
            g.cmd("reset", r"^GUEST-RESET$")
            disks_at_boot(g, 2)
            g.cmd("disk seed 77", r"^OK disk seed 77$")
            verify_records(g, di, 5000, 300)
            poweroff_wait(g)
            out = check_image(rw, ranges)
            check_image(ro, [])
            return "2 disks (rw + ro), %s, %d irqs in irq mode, boot disk set-up %s us" % (
                out, irqs, m.group(1))
        finally:
            g.close()
    run("disk file modern", file_modern, results)

    def file_legacy():
        path = image("legacy.img")
        g = Guest(a.elf, 2, 256, extra=blk(path, 0, "legacy"))
        try:
            disks_at_boot(g, 1)
            g.cmd("disk info 0", r"^DISK-INFO index=0 version=1 ")
            ranges, irqs = record_workload(g)
            poweroff_wait(g)
            return "%s, %d irqs" % (check_image(path, ranges), irqs)
        finally:
            g.close()
    run("disk file legacy", file_legacy, results)

    def evil():
        """The hostile-driver hooks: QEMU flags loops and overlong chains
        with DEVICE_NEEDS_RESET, and `disk reset` brings the disk back. What
        it makes of descriptors outside RAM and of a jumping avail index is
        reported, not checked: QEMU 7.2 completes the first through bounce
        buffers and runs stale ring entries for the second."""
        path = image("evil.img")
        g = Guest(a.elf, 1, 128, extra=MODERN + blk(path, 0, "evil"))
        try:
            disks_at_boot(g, 1)
            g.cmd("disk timeout 3000", r"^OK disk timeout 3000$")
            for kind in ("loop 0 self", "loop 0 pair", "long 0 ring", "long 0 beyond"):
                g.cmd("evil " + kind, r"^EVIL %s disk=0 variant=%s result=needs_reset status=- used_len=0 dev_status=0x4f " %
                      tuple(kind.split(" 0 ")))
                g.cmd("evil " + kind, r"^ERR disk needs reset")
                g.cmd("disk reset 0", r"^OK disk reset 0 id=evil$")
            g.cmd("evil long 0 full", r"^EVIL long disk=0 variant=full result=completed status=ok used_len=31745 ")
            _, m = g.cmd("evil flood 0 10000", r"^EVIL flood disk=0 queue=0 notifies=10000 usec=\d+ ns_per_notify=(\d+) result=ok status=ok ", 30)
            other = []
            for kind in ("oob 0 high", "idx 0 jump"):
                _, r = g.cmd("evil " + kind, r"^EVIL \w+ disk=0 variant=\w+ result=(\w+) ")
                other.append("%s: %s" % (kind.replace(" 0 ", " "), r.group(1)))
                g.cmd("disk reset 0", r"^OK disk reset 0 id=evil$")
            g.cmd("evil oob 0 nowhere", r"^ERR usage: evil oob")
            g.cmd("evil frob 0 x", r"^ERR usage: evil")
            write_records(g, 0, 0, 1000)
            verify_records(g, 0, 0, 1000)
            poweroff_wait(g)
            return "%s; flood %s ns per notify; %s" % (
                check_image(path, [(0, 1000, 1)]), m.group(1), ", ".join(other))
        finally:
            g.close()
    run("disk evil", evil, results)

    def cmdline():
        out = []
        path = image("cmdline.img")
        # acpi=off: QEMU appends virtio_mmio.device=512@0xfeb00e00:12 itself
        g = Guest(a.elf, 1, 128, machine="microvm,acpi=off", extra=MODERN + blk(path, 0))
        try:
            g.expect(r"^GUEST-DISK index=0 base=0xfeb00e00 irq=12 capacity=131072 ro=0 id=$")
            _, m = g.expect(READY_RE)
            if "virtio_mmio.device=512@0xfeb00e00:12" not in m.group(7) or m.group(8) != "1":
                raise Failure(m.group(0))
            g.cmd("disk mode irq", r"^OK disk mode irq$")
            write_records(g, 0, 0, 100)
            verify_records(g, 0, 0, 100)
            _, b = g.cmd("disk bench 0 rand read 4", r"^DISKBENCH .* iops=(\d+) .* completion=irq irqs=(\d+)$")
            if int(b.group(2)) == 0 or int(b.group(1)) < 300:
                raise Failure("irq mode on IOAPIC pin 12: %s" % b.group(0))
            out.append("acpi=off: QEMU's cmdline entry, irq 12")
        finally:
            g.close()
        append = ("console=ttyS0 virtio_mmio.device=4K@0xfeb02e00:47 virtio_mmio.device=1x@1:2 "
                  "virtio_mmio.device=512@0xfeb00000:24")
        g = Guest(a.elf, 1, 128, append=append, extra=MODERN + blk(path, 0, "c1"))
        try:
            g.expect(r"^GUEST-WARN bad virtio_mmio.device=1x@1:2 ")
            g.expect(r"^GUEST-WARN virtio-mmio 0xfeb00000: no device behind the transport$")
            disks_at_boot(g, 1)
            g.cmd("disk list", r"^GUEST-DISK index=0 base=0xfeb02e00 irq=47 capacity=131072 ro=0 id=c1$")
            verify_records(g, 0, 0, 100)
            out.append("-append with K suffix, a bad and an empty entry")
        finally:
            g.close()
        return "; ".join(out)
    run("disk cmdline", cmdline, results)

    def pause():
        """A QMP stop longer than the request timeout in the middle of a write."""
        path = image("pause.img", 256)
        n = 524288  # the whole 256 MiB: ~1 s of record generation and I/O
        g = Guest(a.elf, 2, 256, extra=MODERN + blk(path, 0))
        try:
            disks_at_boot(g, 1)
            g.cmd("disk timeout 1000", r"^OK disk timeout 1000$")
            g.cmd("hb 100", r"^OK hb 100$")
            g.send("disk write 0 0 %d flush" % n)
            time.sleep(0.1)
            g.qmp("stop")
            t_stop = time.monotonic() - g.t0
            time.sleep(2.0)
            g.qmp("cont")
            t_ok, m = g.expect(r"^(OK disk write 0 0 %d flushed=1|DISK-ERROR .*)$" % n, 60)
            if not m.group(0).startswith("OK"):
                raise Failure(m.group(0))
            if t_ok < t_stop:
                raise Failure("the write finished before the stop: nothing was tested")
            g.cmd("hb 0", r"^OK hb 0$")
            verify_records(g, 0, 0, n)
            poweroff_wait(g)
            return "256 MiB write across a 2 s stop with a 1 s timeout: OK %.2f s after cont; %s" % (
                t_ok - t_stop - 2.0, check_image(path, [(0, 4096, 1), (n - 4096, 4096, 1)], rest_zero=False))
        finally:
            g.close()
    run("disk pause", pause, results)

    nbdkit, qemu_img = shutil.which("nbdkit"), shutil.which("qemu-img")

    def start_nbdkit(name, size):
        if not nbdkit or not qemu_img:
            raise Skip("needs nbdkit and qemu-img")
        sock = os.path.join(tmp, name + ".sock")
        p = subprocess.Popen([nbdkit, "-f", "-U", sock, "memory", size],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(sock):
                return p, "nbd+unix:///?socket=" + sock
            time.sleep(0.05)
        p.kill()
        raise Failure("nbdkit did not create " + sock)

    def nbd():
        p, uri = start_nbdkit("mem", "64M")
        g = None
        try:
            g = Guest(a.elf, 2, 256, extra=MODERN + blk(uri, 0, "nbd0"))
            disks_at_boot(g, 1)
            ranges, irqs = record_workload(g)
            poweroff_wait(g)
            out = os.path.join(tmp, "nbd-copy.img")
            r = subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "raw", uri, out],
                               capture_output=True, text=True)
            if r.returncode:
                raise Failure("qemu-img convert: " + r.stderr.strip())
            return "nbdkit memory: %s, %d irqs" % (check_image(out, ranges), irqs)
        finally:
            if g:
                g.close()
            p.kill()
            p.wait()
    run("disk nbdkit", nbd, results)

    def nbd_faults():
        out = []
        p, uri = start_nbdkit("stop", "256M")
        g = None
        try:
            g = Guest(a.elf, 2, 256, extra=MODERN + blk(uri, 0, opts=",werror=report,rerror=report"))
            disks_at_boot(g, 1)
            g.cmd("disk timeout 1500", r"^OK disk timeout 1500$")
            write_records(g, 0, 0, 1000)
            p.send_signal(signal.SIGSTOP)
            t0 = time.monotonic()
            g.cmd("disk write 0 0 50000 flush", r"^DISK-ERROR op=write disk=0 sector=0 status=timeout$", 10)
            took = time.monotonic() - t0
            g.cmd("disk info 0", r"^DISK-INFO .* timeouts=16 lost=16 ")
            g.cmd("disk write 0 0 1", r"^DISK-ERROR op=write disk=0 sector=0 status=busy$", 10)
            p.send_signal(signal.SIGCONT)
            time.sleep(0.5)
            g.cmd("disk info 0", r"^DISK-INFO .* lost=0 bogus=0 ")
            g.cmd("disk seed 9", r"^OK disk seed 9$")
            write_records(g, 0, 0, 1000)
            verify_records(g, 0, 0, 1000)
            out.append("SIGSTOP: timeout after %.1f s (1.5 s set), slots back after SIGCONT" % took)
            g.send("disk write 0 0 524288 flush")
            time.sleep(0.3)
            p.kill()
            _, m = g.expect(r"^(DISK-ERROR op=write disk=0 sector=\d+ status=ioerr|OK disk write .*)$", 30)
            if m.group(0).startswith("OK"):
                raise Failure("256 MiB write finished before nbdkit was killed")
            g.cmd("disk flush 0", r"^DISK-ERROR op=flush disk=0 sector=0 status=ioerr$")
            g.cmd("ping", r"^PONG$")
            out.append("killed: " + m.group(0))
            return "; ".join(out)
        finally:
            if g:
                g.close()
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()
    run("disk nbdkit faults", nbd_faults, results)

    def bench():
        """Each configuration a.bench_repeat times; the median run is shown."""
        lines = []
        runs = [("poll", "seq write 128 1"), ("poll", "seq write 128 16"),
                ("poll", "seq read 128 1"), ("poll", "seq read 128 16"),
                ("poll", "rand write 16 1"), ("poll", "rand write 16 16"),
                ("poll", "rand read 16 1"), ("poll", "rand read 16 16"),
                ("irq", "seq read 128 16"), ("irq", "rand read 16 1"), ("irq", "rand write 16 1")]
        for cache in ("writeback", "none"):
            path = image("bench-%s.img" % cache, 256)
            g = Guest(a.elf, 2, 256, extra=MODERN + blk(path, 0, opts=",cache=%s" % cache))
            try:
                disks_at_boot(g, 1)
                # reads of a sparse file would measure holes: write it all first
                g.cmd("disk bench 0 seq write 128 16", r"^DISKBENCH ", 120)
                for mode, args in runs:
                    g.cmd("disk mode " + mode, r"^OK disk mode %s$" % mode)
                    got = []
                    for _ in range(a.bench_repeat):
                        _, m = g.cmd("disk bench 0 " + args,
                                     r"^DISKBENCH disk=0 mode=(\w+) op=(\w+) bytes=(\d+) usec=(\d+) "
                                     r"iops=(\d+) mibps=([\d.]+) qd=(\d+) completion=(\w+) irqs=\d+$", 120)
                        if int(m.group(3)) != int(args.split()[2]) << 20 or int(m.group(5)) <= 0:
                            raise Failure(m.group(0))
                        got.append(m)
                    got.sort(key=lambda m: float(m.group(6)))
                    m = got[len(got) // 2]
                    spread = "" if len(got) == 1 else "  (%s-%s)" % (got[0].group(6), got[-1].group(6))
                    lines.append("cache=%-9s %-4s %-5s qd=%-2s %-4s %8s MiB/s %7s IOPS%s" % (
                        cache, m.group(1), m.group(2), m.group(7), m.group(8), m.group(6), m.group(5), spread))
            finally:
                g.close()
        return "baseline (QEMU %s, median of %d):\n      %s" % (
            qemu_version(), a.bench_repeat, "\n      ".join(lines))
    if not a.no_bench:
        run("disk bench", bench, results)
    shutil.rmtree(tmp, ignore_errors=True)


def qemu_version():
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
        return out.split("\n")[0].split("version ")[1].split()[0]
    except (OSError, IndexError):
        return "?"


def run(name, fn, results):
    if ONLY and not re.search(ONLY, name):
        return
    try:
        msg = fn()
        results.append((name, True, msg or ""))
        print("PASS %-28s %s" % (name, msg or ""), flush=True)
    except Skip as e:
        results.append((name, None, str(e)))
        print("SKIP %-28s %s" % (name, e), flush=True)
    except Failure as e:
        results.append((name, False, str(e)))
        print("FAIL %-28s %s" % (name, e), flush=True)


def main():
    global VERBOSE, ONLY
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elf", default=DEFAULT_ELF)
    ap.add_argument("--bzimage", default=DEFAULT_BZ)
    ap.add_argument("--shim", default=DEFAULT_SHIM,
                    help="bz64shim.elf (make shim); its image.bin is taken from the same directory")
    ap.add_argument("--quick", action="store_true", help="skip the boot matrix and bzImage")
    ap.add_argument("-v", action="store_true", help="print every console line")
    ap.add_argument("--only", metavar="REGEX", help="run only the checks whose name matches")
    ap.add_argument("--no-bench", action="store_true", help="skip the disk throughput baseline")
    ap.add_argument("--bench-repeat", type=int, default=1, metavar="N",
                    help="run each disk bench N times and show the median")
    a = ap.parse_args()
    VERBOSE = a.v
    ONLY = a.only
    results = []

    def protocol():
        g = Guest(a.elf, 2, 256, append="console=ttyS0 testguest \"quoted\"")
        try:
            t = check_basic(g, 2, 256)
            _, m = g.cmd("info", READY_RE.replace("GUEST-READY", "INFO"))
            if m.group(7) != 'console=ttyS0 testguest "quoted"':
                raise Failure("cmdline %r" % m.group(7))
            out = ["ready %.3f s" % t]
            cpu = idle_cpu(g)
            out.append("idle cpu %.1f%%" % cpu)
            if cpu > 10:
                raise Failure("idle QEMU uses %.1f%% CPU" % cpu)
            out.append(check_hb(g))
            out.append(check_pause(g))
            out.append(check_memcheck_detects(g))
            out.append(check_mem(g, 64, 256))
            out.append(check_dirty(g))
            out.append(check_lines(g))
            g.cmd("diag", r"^DIAG ")
            return "; ".join(out)
        finally:
            g.close()

    run("protocol smp=2 m=256", protocol, results)

    if not a.quick:
        for smp in (1, 2, 4):
            for mem in (128, 256, 2048):
                def boot(smp=smp, mem=mem):
                    g = Guest(a.elf, smp, mem)
                    try:
                        t = check_basic(g, smp, mem)
                        return "ready %.3f s" % t
                    finally:
                        g.close()
                run("boot smp=%d m=%d" % (smp, mem), boot, results)

        def mem_big():
            g = Guest(a.elf, 2, 2048)
            try:
                ready(g, 2, 2048)
                return check_mem(g, 1024, 2048)
            finally:
                g.close()
        run("mem 1024 MiB m=2048", mem_big, results)

    def crash():
        g = Guest(a.elf, 1, 128)
        try:
            ready(g, 1, 128)
            _, m = g.cmd("crash", r"^GUEST-EXCEPTION vec=6 err=0x0 rip=0x[0-9a-f]+$")
            time.sleep(0.3)
            if g.p.poll() is not None:
                raise Failure("QEMU exited after the exception")
            return m.group(0)
        finally:
            g.close()
    run("crash", crash, results)

    def reset():
        g = Guest(a.elf, 2, 256)
        try:
            ready(g, 2, 256)
            g.cmd("hb 100", r"^OK hb 100$")
            t0, _ = g.cmd("reset", r"^GUEST-RESET$")
            t1, _ = ready(g, 2, 256)
            g.cmd("ping", r"^PONG$")
            return "READY again %.3f s after GUEST-RESET" % (t1 - t0)
        finally:
            g.close()
    run("reset", reset, results)

    def triple():
        g = Guest(a.elf, 1, 128)
        try:
            ready(g, 1, 128)
            t0, _ = g.cmd("reset triple", r"^GUEST-RESET$")
            t1, _ = ready(g, 1, 128)
            return "READY again %.3f s after a triple fault" % (t1 - t0)
        finally:
            g.close()
    run("reset triple", triple, results)

    def poweroff():
        g = Guest(a.elf, 2, 256)
        try:
            ready(g, 2, 256)
            t0 = time.monotonic()
            g.cmd("poweroff", r"^GUEST-POWEROFF$")
            rc = g.wait_exit(5)
            if rc is None:
                raise Failure("QEMU still running 5 s after poweroff")
            return "QEMU exited rc=%d after %.3f s" % (rc, time.monotonic() - t0)
        finally:
            g.close()
    run("poweroff", poweroff, results)

    image_bin = os.path.join(os.path.dirname(a.shim), "image.bin")
    if os.path.exists(a.shim) and os.path.exists(image_bin):
        def bz64():
            g = Guest(a.shim, 2, 256, append="via 64-bit entry",
                      extra=["-device", "loader,file=%s,addr=0x100000,force-raw=on" % image_bin])
            try:
                t = check_basic(g, 2, 256, boot="bzimage")
                _, m = g.cmd("info", r"^INFO .* cmdline=\"(.*)\" disks=0$")
                if m.group(1) != "via 64-bit entry":
                    raise Failure("cmdline %r" % m.group(1))
                g.cmd("mem start 32", r"^OK mem start 32$", timeout=30)
                g.cmd("mem check", r"^MEMCHECK ok ")
                return "ready %.3f s" % t
            finally:
                g.close()
        run("bzImage 64-bit entry (shim)", bz64, results)

    if not a.quick and os.path.exists(a.bzimage):
        def bz():
            g = Guest(a.bzimage, 2, 256, machine="pc", append="bz test")
            try:
                t = check_basic(g, 2, 256, boot="bzimage")
                _, m = g.cmd("info", r"^INFO .* cmdline=\"(.*)\" disks=0$")
                if m.group(1) != "bz test":
                    raise Failure("cmdline %r" % m.group(1))
                g.cmd("mem start 32", r"^OK mem start 32$", timeout=30)
                time.sleep(0.3)
                g.cmd("mem check", r"^MEMCHECK ok ")
                return "ready %.3f s (SeaBIOS, -M pc)" % t
            finally:
                g.close()
        run("bzImage -M pc", bz, results)

    disk_checks(a, results)

    bad = [r for r in results if r[1] is False]
    skipped = [r for r in results if r[1] is None]
    print("%d checks, %d failed, %d skipped" % (len(results), len(bad), len(skipped)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
