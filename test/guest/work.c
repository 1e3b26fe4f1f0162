/* Memory workloads on [WORK_BASE, WORK_BASE + MiB), run by the BSP at CPL3
 * in slices so that the console and the heartbeat stay responsive.
 *
 * mem:   QEMU migration-test style. Byte 0 of every 4 KiB page is
 *        incremented, page after page, pass after pass. At any instant the
 *        region reads [0,pos) = v+1, [pos,n) = v, which `mem check` verifies.
 * dirty: writes a non-zero counter to byte 8 of pages round-robin at a
 *        given rate (byte 8, so that it never disturbs the mem pattern). */
#include "guest.h"

enum { MEM_NONE, MEM_INIT, MEM_RUN };

static struct {
	int state, running;
	unsigned ok_pending; /* "mem start" replies owed until MEM_INIT ends */
	u64 mib, pages, pos, passes;
} mem;

static struct {
	int on;
	u64 pps, mib, pages, pos, start, done, counter;
} dirty;

static const struct clock *clk;

void work_init(const struct clock *c) { clk = c; }

static volatile u8 *page(u64 i) { return (volatile u8 *)(uptr)(WORK_BASE + (i << 12)); }

static void reply_mem_started(void)
{
	struct line l;
	l_init(&l);
	l_str(&l, "OK mem start ");
	l_u64(&l, mem.mib);
	l_emit(&l);
}

static void mem_check(void)
{
	struct line l;
	l_init(&l);
	u8 hi = *page(0), lo = hi - 1;
	int dropped = 0;
	for (u64 i = 0; i < mem.pages; i++) {
		u8 v = *page(i);
		u8 want = dropped ? lo : hi;
		if (v == want)
			continue;
		if (!dropped && v == lo) {
			dropped = 1;
			continue;
		}
		l_str(&l, "MEMCHECK bad page=");
		l_u64(&l, i);
		l_str(&l, " value=");
		l_u64(&l, v);
		l_str(&l, " expected=");
		l_u64(&l, want);
		l_emit(&l);
		return;
	}
	l_str(&l, "MEMCHECK ok pages=");
	l_u64(&l, mem.pages);
	l_str(&l, " passes=");
	l_u64(&l, mem.passes);
	l_emit(&l);
}

static int region_arg(struct bootinfo *bi, const char *s, u64 *mib)
{
	if (!parse_u64(s, mib) || *mib == 0 || *mib > 4096) {
		puts_line("ERR bad MiB");
		return 0;
	}
	if (!ram_contains(bi, WORK_BASE, WORK_BASE + (*mib << 20))) {
		puts_line("ERR region exceeds RAM");
		return 0;
	}
	return 1;
}

void work_cmd_mem(struct bootinfo *bi, char **argv, int argc)
{
	const char *sub = argc > 1 ? argv[1] : "";
	struct line l;
	l_init(&l);
	if (streq(sub, "start") && argc == 3) {
		u64 mib;
		if (!region_arg(bi, argv[2], &mib))
			return;
		if (mem.state != MEM_NONE && mem.mib == mib) {
			/* same region: resume where it stopped, the pattern holds */
			mem.running = 1;
			if (mem.state == MEM_RUN)
				reply_mem_started();
			else
				mem.ok_pending++;
			return;
		}
		mem.state = MEM_INIT;
		mem.running = 1;
		mem.ok_pending = 1;
		mem.mib = mib;
		mem.pages = mib << 8;
		mem.pos = 0;
		mem.passes = 0;
	} else if (streq(sub, "stop") && argc == 2) {
		mem.running = 0;
		puts_line("OK mem stop");
	} else if (streq(sub, "status") && argc == 2) {
		l_str(&l, mem.running ? "MEM running passes=" : "MEM stopped passes=");
		l_u64(&l, mem.passes);
		l_emit(&l);
	} else if ((streq(sub, "peek") && argc == 3) || (streq(sub, "poke") && argc == 4)) {
		/* test hooks: read or overwrite byte 0 of one page of the region */
		u64 pg, v = 0;
		if (mem.state == MEM_NONE || !parse_u64(argv[2], &pg) || pg >= mem.pages ||
		    (argc == 4 && (!parse_u64(argv[3], &v) || v > 255))) {
			puts_line("ERR usage: mem peek <page> | mem poke <page> <byte> (after mem start)");
			return;
		}
		if (argc == 4) {
			*page(pg) = v;
			puts_line("OK mem poke");
			return;
		}
		l_str(&l, "MEM page=");
		l_u64(&l, pg);
		l_str(&l, " value=");
		l_u64(&l, *page(pg));
		l_emit(&l);
	} else if (streq(sub, "check") && argc == 2) {
		if (mem.state == MEM_NONE)
			puts_line("ERR mem not started");
		else if (mem.state == MEM_INIT)
			puts_line("ERR mem initializing");
		else
			mem_check();
	} else {
		puts_line("ERR usage: mem start <MiB> | stop | status | check");
	}
}

void work_cmd_dirty(struct bootinfo *bi, char **argv, int argc)
{
	u64 pps, mib = 0;
	if (argc == 2 && streq(argv[1], "status")) {
		struct line l;
		l_init(&l);
		l_str(&l, dirty.on ? "DIRTY running pps=" : "DIRTY stopped pps=");
		l_u64(&l, dirty.pps);
		l_str(&l, " mib=");
		l_u64(&l, dirty.mib);
		l_str(&l, " written=");
		l_u64(&l, dirty.counter);
		l_emit(&l);
		return;
	}
	if (argc < 2 || argc > 3 || !parse_u64(argv[1], &pps) || pps > 100000000ull ||
	    (pps && argc != 3)) {
		puts_line("ERR usage: dirty <pages_per_sec> <MiB> | dirty 0 | dirty status");
		return;
	}
	if (pps == 0) {
		dirty.on = 0;
		puts_line("OK dirty 0");
		return;
	}
	if (!region_arg(bi, argv[2], &mib))
		return;
	dirty.on = 1;
	dirty.counter = 0;
	dirty.pps = pps;
	dirty.mib = mib;
	dirty.pages = mib << 8;
	dirty.pos = 0;
	dirty.start = rdtsc();
	dirty.done = 0;
	struct line l;
	l_init(&l);
	l_str(&l, "OK dirty ");
	l_u64(&l, pps);
	l_chr(&l, ' ');
	l_u64(&l, mib);
	l_emit(&l);
}

/* Returns 1 if it is behind schedule. */
static int dirty_step(void)
{
	u64 now = rdtsc();
	u64 due = (now - dirty.start) * dirty.pps / clk->tsc_hz;
	if (due > dirty.done + dirty.pps / 5 + 1) {
		/* more than 200 ms behind (VM paused, or a rate we cannot keep):
		 * drop the backlog rather than burst */
		dirty.start = now;
		dirty.done = 0;
		return 1;
	}
	u64 n = due - dirty.done;
	if (n > 16384)
		n = 16384;
	for (u64 i = 0; i < n; i++) {
		*(volatile u64 *)(page(dirty.pos) + 8) = ++dirty.counter;
		if (++dirty.pos == dirty.pages)
			dirty.pos = 0;
	}
	dirty.done += n;
	if (dirty.done >= dirty.pps) { /* keep the products small */
		dirty.start += clk->tsc_hz;
		dirty.done -= dirty.pps;
		due -= dirty.pps;
	}
	return due > dirty.done;
}

static void mem_step(u64 until)
{
	do {
		for (int k = 0; k < 64; k++) {
			if (mem.state == MEM_INIT)
				*page(mem.pos) = 0;
			else
				*page(mem.pos) += 1;
			if (++mem.pos < mem.pages)
				continue;
			mem.pos = 0;
			if (mem.state == MEM_INIT) {
				mem.state = MEM_RUN;
				while (mem.ok_pending) {
					mem.ok_pending--;
					reply_mem_started();
				}
				return;
			}
			mem.passes++;
		}
	} while (rdtsc() < until);
}

int work_step(const struct clock *c, u64 until)
{
	(void)c;
	int busy = 0;
	if (dirty.on)
		busy |= dirty_step();
	if (mem.running) {
		mem_step(until);
		busy = 1;
	}
	return busy;
}
