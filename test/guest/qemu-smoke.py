#!/usr/bin/env python3
"""Boots the vmmd test guest under QEMU and checks its serial protocol.

Usage: qemu-smoke.py [--elf PATH] [--bzimage PATH] [--quick] [-v]

Runs the protocol checks (README.md) on a 2-CPU 256 MiB microvm, a boot
matrix (-smp 1/2/4 x -m 128/256/2048), crash/reset/poweroff, and reports
the time from QEMU start to GUEST-READY and QEMU's CPU use with the guest
idle. Exit status 0 only if every check passed.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ELF = os.path.join(HERE, "..", "..", "build", "guest", "vmmd-testguest.elf")
DEFAULT_BZ = os.path.join(HERE, "..", "..", "build", "guest", "vmmd-testguest.bzImage")
DEFAULT_SHIM = os.path.join(HERE, "..", "..", "build", "guest", "obj", "bz64shim.elf")
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
READY_RE = (r"^GUEST-READY (vmmd-testguest boot=(\w+) cpus=(\d+) mem=(\d+)M "
            r"ram_kib=(\d+) e820=(\d+) cmdline=\"(.*)\")$")
VERBOSE = False


class Failure(Exception):
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


def run(name, fn, results):
    try:
        msg = fn()
        results.append((name, True, msg or ""))
        print("PASS %-28s %s" % (name, msg or ""))
    except Failure as e:
        results.append((name, False, str(e)))
        print("FAIL %-28s %s" % (name, e))


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elf", default=DEFAULT_ELF)
    ap.add_argument("--bzimage", default=DEFAULT_BZ)
    ap.add_argument("--shim", default=DEFAULT_SHIM,
                    help="bz64shim.elf (make shim); its image.bin is taken from the same directory")
    ap.add_argument("--quick", action="store_true", help="skip the boot matrix and bzImage")
    ap.add_argument("-v", action="store_true", help="print every console line")
    a = ap.parse_args()
    VERBOSE = a.v
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
                _, m = g.cmd("info", r"^INFO .* cmdline=\"(.*)\"$")
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
                _, m = g.cmd("info", r"^INFO .* cmdline=\"(.*)\"$")
                if m.group(1) != "bz test":
                    raise Failure("cmdline %r" % m.group(1))
                g.cmd("mem start 32", r"^OK mem start 32$", timeout=30)
                time.sleep(0.3)
                g.cmd("mem check", r"^MEMCHECK ok ")
                return "ready %.3f s (SeaBIOS, -M pc)" % t
            finally:
                g.close()
        run("bzImage -M pc", bz, results)

    bad = [r for r in results if not r[1]]
    print("%d checks, %d failed" % (len(results), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
