#!/usr/bin/env python3
"""Checks a raw disk image for the test guest's records, byte for byte.

Usage: check-records.py IMAGE [FIRST:COUNT[:SEED] ...] [--rest-zero] [-q]

Each range says: sectors FIRST .. FIRST+COUNT-1 hold records FIRST ..
FIRST+COUNT-1 written with SEED (default 1), exactly as `disk write`
produces them (format: README.md, "Disk records"). With --rest-zero every
other sector of the image must be all zero (a fresh image that only the
guest wrote). Later ranges override earlier ones where they overlap (a
rewrite with another seed). Prints "RECORDS ok ..." or the first bad
sector with the reason, and exits 0 only if everything matched.
"""
import argparse
import struct
import sys
import zlib

SECTOR = 512
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MAGIC = b"VMMDREC1"


def splitmix64(state):
    state = (state + GOLDEN) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def record(n, seed):
    """The 512 bytes of record n written with seed."""
    head = MAGIC + struct.pack("<QQ", n, seed)
    x = (seed ^ (n * GOLDEN)) & MASK
    words = []
    for _ in range(61):  # 488 bytes, the first 484 are the payload
        x, z = splitmix64(x)
        words.append(struct.pack("<Q", z))
    body = head + b"".join(words)[:484]
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def reason(got, n, seed):
    if got[:8] != MAGIC:
        return "magic"
    if struct.unpack_from("<Q", got, 8)[0] != n:
        return "number %d" % struct.unpack_from("<Q", got, 8)[0]
    if struct.unpack_from("<Q", got, 16)[0] != seed:
        return "seed %d" % struct.unpack_from("<Q", got, 16)[0]
    if struct.unpack_from("<I", got, 508)[0] != zlib.crc32(got[:508]) & 0xFFFFFFFF:
        return "checksum"
    return "payload"


def parse_range(s):
    parts = s.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError("want FIRST:COUNT[:SEED], got %r" % s)
    vals = [int(p, 0) for p in parts]
    if len(vals) == 2:
        vals.append(1)
    if vals[0] < 0 or vals[1] < 0 or not 0 <= vals[2] <= MASK:
        raise argparse.ArgumentTypeError("bad range %r" % s)
    return tuple(vals)


def check(path, ranges, rest_zero):
    """Returns (ok, message)."""
    want = {}  # sector -> seed; later ranges win
    for first, count, seed in ranges:
        for n in range(first, first + count):
            want[n] = seed
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        sectors = size // SECTOR
        for n in sorted(want):
            if n >= sectors:
                return False, "RECORDS bad sector=%d reason=beyond the end (%d sectors)" % (n, sectors)
            f.seek(n * SECTOR)
            got = f.read(SECTOR)
            if got != record(n, want[n]):
                return False, "RECORDS bad sector=%d reason=%s" % (n, reason(got, n, want[n]))
        if rest_zero:
            zero = bytes(SECTOR * 2048)
            f.seek(0)
            base = 0
            while base < sectors:
                chunk = f.read(len(zero))
                if not chunk:
                    break
                if chunk != zero[:len(chunk)]:
                    for i in range(len(chunk) // SECTOR):
                        n = base + i
                        if n not in want and any(chunk[i * SECTOR:(i + 1) * SECTOR]):
                            return False, "RECORDS bad sector=%d reason=not zero" % n
                base += len(chunk) // SECTOR
    return True, "RECORDS ok records=%d sectors=%d%s" % (
        len(want), sectors, " rest=zero" if rest_zero else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image")
    ap.add_argument("ranges", nargs="*", type=parse_range, metavar="FIRST:COUNT[:SEED]")
    ap.add_argument("--rest-zero", action="store_true", help="every other sector must be zero")
    ap.add_argument("-q", action="store_true", help="print nothing, exit status only")
    a = ap.parse_args()
    ok, msg = check(a.image, a.ranges, a.rest_zero)
    if not a.q:
        print(msg)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
