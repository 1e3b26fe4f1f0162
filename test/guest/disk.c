/* The `disk` serial commands: numbered, checksummed records (write, flush,
 * verify), GET_ID, and a throughput benchmark. Requests are pipelined over
 * the disk's slots by run_batch(); every command answers only after each
 * request it sent has completed or timed out. Record format: README.md. */
#include "virtio.h"

#define REC_BYTES 512
#define REC_PER_REQ (SLOT_BYTES / REC_BYTES)
#define REC_PAYLOAD_OFF 24
#define REC_CRC_OFF 508

static u32 crc_table[256];

static void crc_init(void)
{
	for (u32 i = 0; i < 256; i++) {
		u32 c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

/* CRC-32 (IEEE 802.3, as zlib.crc32 and Go's crc32.ChecksumIEEE) */
static u32 crc32(const u8 *p, unsigned n)
{
	u32 c = 0xffffffffu;
	for (unsigned i = 0; i < n; i++)
		c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return ~c;
}

static u64 splitmix64(u64 *x)
{
	u64 z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void put64(u8 *p, u64 v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}
static u64 get64(const u8 *p)
{
	u64 v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void payload(u8 *p, u64 n, u64 seed)
{
	u64 x = seed ^ (n * 0x9e3779b97f4a7c15ull);
	for (unsigned i = 0; i < REC_CRC_OFF - REC_PAYLOAD_OFF; i += 8) {
		u64 z = splitmix64(&x);
		for (unsigned k = 0; k < 8 && i + k < REC_CRC_OFF - REC_PAYLOAD_OFF; k++)
			p[i + k] = z >> (8 * k);
	}
}

static void record_make(u8 *r, u64 n, u64 seed)
{
	memcpy(r, "VMMDREC1", 8);
	put64(r + 8, n);
	put64(r + 16, seed);
	payload(r + REC_PAYLOAD_OFF, n, seed);
	u32 c = crc32(r, REC_CRC_OFF);
	for (int i = 0; i < 4; i++)
		r[REC_CRC_OFF + i] = c >> (8 * i);
}

/* NULL if the record is good, else the reason. */
static const char *record_check(const u8 *r, u64 n, u64 seed)
{
	u8 want[REC_BYTES - REC_PAYLOAD_OFF];
	if (memcmp(r, "VMMDREC1", 8))
		return "magic";
	if (get64(r + 8) != n)
		return "number";
	if (get64(r + 16) != seed)
		return "seed";
	u32 c = crc32(r, REC_CRC_OFF);
	if ((r[508] | r[509] << 8 | r[510] << 16 | (u32)r[511] << 24) != c)
		return "checksum";
	payload(want, n, seed);
	if (memcmp(r + REC_PAYLOAD_OFF, want, REC_CRC_OFF - REC_PAYLOAD_OFF))
		return "payload";
	return NULL;
}

const char *blk_status_name(u32 st, char *buf)
{
	switch (st) {
	case BLK_S_OK: return "ok";
	case BLK_S_IOERR: return "ioerr";
	case BLK_S_UNSUPP: return "unsupp";
	case BLK_S_TIMEOUT: return "timeout";
	case BLK_S_BUSY: return "busy";
	}
	struct line l;
	l_init(&l);
	l_u64(&l, st);
	l.b[l.n] = 0;
	memcpy(buf, l.b, l.n + 1);
	return buf;
}

static const char *op_name(u32 type)
{
	switch (type) {
	case BLK_T_IN: return "read";
	case BLK_T_OUT: return "write";
	case BLK_T_FLUSH: return "flush";
	case BLK_T_GET_ID: return "id";
	}
	return "other";
}

static void disk_error(const struct disk *d, u32 type, u64 sector, u32 status)
{
	char nb[24];
	struct line l;
	l_init(&l);
	l_str(&l, "DISK-ERROR op=");
	l_str(&l, op_name(type));
	l_str(&l, " disk=");
	l_u64(&l, d->index);
	l_str(&l, " sector=");
	l_u64(&l, sector);
	l_str(&l, " status=");
	l_str(&l, blk_status_name(status, nb));
	l_emit(&l);
}

/* ---- pipelined batches ------------------------------------------------ */
struct batch {
	struct disk *d;
	u32 type;
	unsigned qd;
	u64 next, end;                                 /* work units left: [next, end) */
	void (*submit)(struct batch *b, unsigned s);   /* submits the unit(s) at next, advances it */
	int (*complete)(struct batch *b, unsigned s);  /* 0: stop submitting */
	int failed;
	u32 err_type, err_status;
	u64 err_sector;
	u64 nreq;
	/* per command */
	u64 seed, rng, mib;
	int bad;
	u64 bad_record;
	const char *bad_reason;
};

static void batch_fail(struct batch *b, u32 type, u64 sector, u32 status)
{
	if (!b->failed || sector < b->err_sector) {
		b->err_type = type;
		b->err_sector = sector;
		b->err_status = status;
	}
	b->failed = 1;
}

/* 1 if every request completed with status OK (and `complete` did not stop it). */
static int run_batch(struct batch *b)
{
	struct disk *d = b->d;
	unsigned inflight = 0;
	int stop = 0;
	for (;;) {
		while (!stop && b->next < b->end && inflight < b->qd) {
			int s = disk_free_slot(d);
			if (s < 0)
				break;
			b->submit(b, s);
			b->nreq++;
			inflight++;
		}
		disk_kick(d);
		if (!inflight) {
			if (stop || b->next >= b->end)
				break;
			/* every slot still held by requests that timed out earlier */
			if (!disk_wait(d, run_clock() + disks.timeout_ms * disks.clk->tsc_khz)) {
				batch_fail(b, b->type, 0, BLK_S_BUSY);
				break;
			}
			continue;
		}
		disk_wait(d, 0);
		for (unsigned s = 0; s < d->nslots; s++) {
			struct slot *sl = &d->slot[s];
			if (sl->state != SLOT_DONE)
				continue;
			inflight--;
			if (sl->status != BLK_S_OK) {
				batch_fail(b, sl->type, sl->sector, sl->status);
				stop = 1;
			} else if (b->complete && !b->complete(b, s)) {
				stop = 1;
			}
			slot_release(d, s);
		}
	}
	if (b->failed)
		disk_error(d, b->err_type, b->err_sector, b->err_status);
	return !b->failed && !b->bad;
}

static void submit_write_records(struct batch *b, unsigned s)
{
	u64 n = b->end - b->next < REC_PER_REQ ? b->end - b->next : REC_PER_REQ;
	u8 *buf = slot_buf(b->d, s);
	for (u64 i = 0; i < n; i++)
		record_make(buf + i * REC_BYTES, b->next + i, b->seed);
	slot_submit(b->d, s, BLK_T_OUT, b->next, n * REC_BYTES);
	b->next += n;
}

static void submit_read_records(struct batch *b, unsigned s)
{
	u64 n = b->end - b->next < REC_PER_REQ ? b->end - b->next : REC_PER_REQ;
	slot_submit(b->d, s, BLK_T_IN, b->next, n * REC_BYTES);
	b->next += n;
}

static int complete_verify(struct batch *b, unsigned s)
{
	const struct slot *sl = &b->d->slot[s];
	const u8 *buf = slot_buf(b->d, s);
	for (u64 i = 0; i < sl->bytes / REC_BYTES; i++) {
		const char *why = record_check(buf + i * REC_BYTES, sl->sector + i, b->seed);
		if (!why)
			continue;
		if (!b->bad || sl->sector + i < b->bad_record) {
			b->bad = 1;
			b->bad_record = sl->sector + i;
			b->bad_reason = why;
		}
		return 0;
	}
	return 1;
}

static int flush(struct disk *d)
{
	u32 st = disk_single(d, BLK_T_FLUSH, 0, 0, 0);
	if (st != BLK_S_OK) {
		disk_error(d, BLK_T_FLUSH, 0, st);
		return 0;
	}
	return 1;
}

/* ---- benchmark -------------------------------------------------------- */
static u64 xorshift(u64 *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void submit_seq(struct batch *b, unsigned s)
{
	slot_submit(b->d, s, b->type, b->next * (SLOT_BYTES / 512), SLOT_BYTES);
	b->next++;
}

static void submit_rand(struct batch *b, unsigned s)
{
	u64 blocks = b->mib * 256; /* 4 KiB blocks */
	slot_submit(b->d, s, b->type, (xorshift(&b->rng) % blocks) * 8, 4096);
	b->next++;
}

/* ---- commands --------------------------------------------------------- */
struct disk *disk_arg(const char *s)
{
	u64 i;
	if (!parse_u64(s, &i) || i >= disks.n) {
		puts_line("ERR no such disk");
		return NULL;
	}
	return &disks.d[i];
}

static int range_ok(const struct disk *d, u64 first, u64 count)
{
	if (first > d->capacity || count > d->capacity - first) {
		puts_line("ERR range exceeds capacity");
		return 0;
	}
	return 1;
}

static void cmd_write(char **argv, int argc)
{
	u64 first, count;
	int fl = argc == 6 && streq(argv[5], "flush");
	if ((argc != 5 && !fl) || !parse_u64(argv[3], &first) || !parse_u64(argv[4], &count)) {
		puts_line("ERR usage: disk write <disk> <first-record> <count> [flush]");
		return;
	}
	struct disk *d = disk_arg(argv[2]);
	if (!d || !range_ok(d, first, count))
		return;
	struct batch b;
	memset(&b, 0, sizeof(b));
	b.d = d;
	b.type = BLK_T_OUT;
	b.qd = d->nslots;
	b.next = first;
	b.end = first + count;
	b.seed = disks.seed;
	b.submit = submit_write_records;
	if (!run_batch(&b))
		return;
	if (fl && !flush(d))
		return;
	struct line l;
	l_init(&l);
	l_str(&l, "OK disk write ");
	l_u64(&l, d->index);
	l_chr(&l, ' ');
	l_u64(&l, first);
	l_chr(&l, ' ');
	l_u64(&l, count);
	l_str(&l, fl ? " flushed=1" : " flushed=0");
	l_emit(&l);
}

static void cmd_verify(char **argv, int argc)
{
	u64 first, count;
	if (argc != 5 || !parse_u64(argv[3], &first) || !parse_u64(argv[4], &count)) {
		puts_line("ERR usage: disk verify <disk> <first-record> <count>");
		return;
	}
	struct disk *d = disk_arg(argv[2]);
	if (!d || !range_ok(d, first, count))
		return;
	struct batch b;
	memset(&b, 0, sizeof(b));
	b.d = d;
	b.type = BLK_T_IN;
	b.qd = d->nslots;
	b.next = first;
	b.end = first + count;
	b.seed = disks.seed;
	b.submit = submit_read_records;
	b.complete = complete_verify;
	run_batch(&b);
	if (b.failed)
		return; /* DISK-ERROR printed */
	struct line l;
	l_init(&l);
	if (b.bad) {
		l_str(&l, "VERIFY bad disk=");
		l_u64(&l, d->index);
		l_str(&l, " record=");
		l_u64(&l, b.bad_record);
		l_str(&l, " reason=");
		l_str(&l, b.bad_reason);
	} else {
		l_str(&l, "VERIFY ok disk=");
		l_u64(&l, d->index);
		l_str(&l, " records=");
		l_u64(&l, count);
	}
	l_emit(&l);
}

static void cmd_bench(char **argv, int argc)
{
	u64 mib, qd = 1;
	int seq = argc >= 6 && streq(argv[3], "seq"), rnd = argc >= 6 && streq(argv[3], "rand");
	int rd = argc >= 6 && streq(argv[4], "read"), wrt = argc >= 6 && streq(argv[4], "write");
	if (argc < 6 || argc > 7 || !(seq || rnd) || !(rd || wrt) || !parse_u64(argv[5], &mib) || !mib ||
	    mib > 65536 || (argc == 7 && (!parse_u64(argv[6], &qd) || !qd || qd > MAX_SLOTS))) {
		puts_line("ERR usage: disk bench <disk> seq|rand read|write <MiB 1-65536> [qd 1-16]");
		return;
	}
	struct disk *d = disk_arg(argv[2]);
	if (!d || !range_ok(d, 0, mib << 11))
		return;
	struct batch b;
	memset(&b, 0, sizeof(b));
	b.d = d;
	b.type = rd ? BLK_T_IN : BLK_T_OUT;
	b.qd = qd < d->nslots ? qd : d->nslots;
	b.mib = mib;
	b.end = seq ? mib * 16 : mib * 256; /* 64 KiB or 4 KiB requests */
	b.rng = disks.seed * 0x9e3779b97f4a7c15ull | 1;
	b.submit = seq ? submit_seq : submit_rand;
	u64 irqs0 = disk_irqs;
	u64 t0 = rdtsc();
	if (!run_batch(&b))
		return;
	u64 us = (rdtsc() - t0) * 1000 / disks.clk->tsc_khz;
	if (!us)
		us = 1;
	u64 bytes = mib << 20;
	u64 centi = bytes * 100000000 / us / (1 << 20); /* MiB/s * 100 */
	struct line l;
	l_init(&l);
	l_str(&l, "DISKBENCH disk=");
	l_u64(&l, d->index);
	l_str(&l, seq ? " mode=seq" : " mode=rand");
	l_str(&l, rd ? " op=read" : " op=write");
	l_str(&l, " bytes=");
	l_u64(&l, bytes);
	l_str(&l, " usec=");
	l_u64(&l, us);
	l_str(&l, " iops=");
	l_u64(&l, b.nreq * 1000000 / us);
	l_str(&l, " mibps=");
	l_u64(&l, centi / 100);
	l_chr(&l, '.');
	l_chr(&l, '0' + centi / 10 % 10);
	l_chr(&l, '0' + centi % 10);
	l_str(&l, " qd=");
	l_u64(&l, b.qd);
	l_str(&l, disks.irq_mode ? " completion=irq irqs=" : " completion=poll irqs=");
	l_u64(&l, disk_irqs - irqs0);
	l_emit(&l);
}

/* Test hook: one request of any type at sector 0 with a 512-byte buffer
 * (zeros, device-readable for OUT, DISCARD, WRITE_ZEROES and SECURE_ERASE,
 * else device-writable), e.g. type 127 for an UNSUPP answer. */
static void cmd_op(char **argv)
{
	u64 type;
	struct disk *d = disk_arg(argv[2]);
	if (!d)
		return;
	if (!parse_u64(argv[3], &type) || type > 0xffffffffull) {
		puts_line("ERR usage: disk op <disk> <type>");
		return;
	}
	/* zero what the device may read: disk_single takes some free slot */
	for (unsigned i = 0; i < d->nslots; i++)
		if (d->slot[i].state == SLOT_FREE)
			memset(slot_buf(d, i), 0, 512);
	u32 st = disk_single(d, type, 0, 0, type == BLK_T_FLUSH ? 0 : 512);
	char nb[24];
	struct line l;
	l_init(&l);
	l_str(&l, "DISK-OP type=");
	l_u64(&l, type);
	l_str(&l, " status=");
	l_str(&l, blk_status_name(st, nb));
	l_emit(&l);
}

static void cmd_info(struct disk *d)
{
	struct line l;
	l_init(&l);
	l_str(&l, "DISK-INFO index=");
	l_u64(&l, d->index);
	l_str(&l, " version=");
	l_u64(&l, d->version);
	l_str(&l, " offered=");
	l_hex(&l, d->offered);
	l_str(&l, " features=");
	l_hex(&l, d->features);
	l_str(&l, " blk_size=");
	l_u64(&l, d->blk_size);
	l_str(&l, " seg_max=");
	l_u64(&l, d->seg_max);
	l_str(&l, " queue=");
	l_u64(&l, d->qsize);
	l_str(&l, " slots=");
	l_u64(&l, d->nslots);
	l_str(&l, " irq_routed=");
	l_u64(&l, d->irq_routed);
	l_str(&l, " requests=");
	l_u64(&l, d->requests);
	l_str(&l, " errors=");
	l_u64(&l, d->errors);
	l_str(&l, " timeouts=");
	l_u64(&l, d->timeouts);
	l_str(&l, " lost=");
	l_u64(&l, disk_lost_slots(d));
	l_str(&l, " bogus=");
	l_u64(&l, d->bogus);
	l_str(&l, " irqs=");
	l_u64(&l, disk_irqs);
	l_emit(&l);
}

void disk_cmd(char **argv, int argc)
{
	const char *sub = argc > 1 ? argv[1] : "";
	struct line l;
	l_init(&l);
	if (!crc_table[1])
		crc_init();
	for (unsigned i = 0; i < disks.n; i++)
		disk_reap(&disks.d[i]); /* late completions of timed-out requests */
	if (streq(sub, "list") && argc == 2) {
		disk_print_all();
		puts_line("OK disk list");
	} else if (streq(sub, "write")) {
		cmd_write(argv, argc);
	} else if (streq(sub, "verify")) {
		cmd_verify(argv, argc);
	} else if (streq(sub, "flush") && argc == 3) {
		struct disk *d = disk_arg(argv[2]);
		if (d && flush(d))
			puts_line("OK disk flush");
	} else if (streq(sub, "bench")) {
		cmd_bench(argv, argc);
	} else if (streq(sub, "id") && argc == 3) {
		struct disk *d = disk_arg(argv[2]);
		u32 st;
		if (!d)
			return;
		if (!disk_get_id(d, &st)) {
			disk_error(d, BLK_T_GET_ID, 0, st);
			return;
		}
		l_str(&l, "DISK-ID ");
		l_str(&l, d->id);
		l_emit(&l);
	} else if (streq(sub, "reset") && argc == 3) {
		struct disk *d = disk_arg(argv[2]);
		u32 st;
		if (!d)
			return;
		if (!disk_reset(d)) {
			l_str(&l, "DISK-ERROR op=reset disk=");
			l_u64(&l, d->index);
			l_str(&l, " sector=0 status=setup");
			l_emit(&l);
			return;
		}
		if (!disk_get_id(d, &st)) {
			disk_error(d, BLK_T_GET_ID, 0, st);
			return;
		}
		l_str(&l, "OK disk reset ");
		l_u64(&l, d->index);
		l_str(&l, " id=");
		l_str(&l, d->id);
		l_emit(&l);
	} else if (streq(sub, "op") && argc == 4) {
		cmd_op(argv);
	} else if (streq(sub, "info") && argc == 3) {
		struct disk *d = disk_arg(argv[2]);
		if (d)
			cmd_info(d);
	} else if (streq(sub, "mode") && argc == 3 && (streq(argv[2], "poll") || streq(argv[2], "irq"))) {
		if (!disk_set_irq_mode(argv[2][0] == 'i')) {
			puts_line("ERR irq mode needs a routable interrupt for every disk and the idle timer");
			return;
		}
		l_str(&l, "OK disk mode ");
		l_str(&l, argv[2]);
		l_emit(&l);
	} else if (streq(sub, "seed") && argc == 3) {
		u64 v;
		if (!parse_u64(argv[2], &v)) {
			puts_line("ERR usage: disk seed <u64>");
			return;
		}
		disks.seed = v;
		l_str(&l, "OK disk seed ");
		l_u64(&l, v);
		l_emit(&l);
	} else if (streq(sub, "timeout") && argc == 3) {
		u64 ms;
		if (!parse_u64(argv[2], &ms) || !ms || ms > 3600000) {
			puts_line("ERR usage: disk timeout <ms 1-3600000>");
			return;
		}
		disks.timeout_ms = ms;
		l_str(&l, "OK disk timeout ");
		l_u64(&l, ms);
		l_emit(&l);
	} else {
		puts_line("ERR usage: disk list | write | flush | verify | bench | mode | id | info | seed | timeout | op | reset");
	}
}
