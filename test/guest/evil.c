/* The `evil` commands: a virtio-blk driver that breaks the rules on
 * purpose, so that tests can show the VMM survives a hostile guest. Each
 * command puts one malformed request on the disk's queue (descriptors
 * outside RAM, looping or overlong chains, a nonsense avail index) or
 * floods QueueNotify, then watches the device: it completes the request,
 * sets DEVICE_NEEDS_RESET, or stays silent. The disk is left as the device
 * left it; `disk reset` brings it back. The guest itself never touches the
 * bad addresses: only the descriptors name them. */
#include "virtio.h"

#define ST_NEEDS_RESET 0x40

/* Everything an evil request needs to start from: a set-up disk with no
 * request in flight, whose device still answers, and descriptors beyond
 * the slots' (or, for `long`, the whole table). */
static struct disk *evil_disk(const char *arg)
{
	struct disk *d = disk_arg(arg);
	if (!d)
		return NULL;
	disk_reap(d);
	for (unsigned s = 0; s < d->nslots; s++) {
		if (d->slot[s].state != SLOT_FREE) {
			puts_line("ERR disk busy (requests in flight or lost)");
			return NULL;
		}
	}
	if (disk_rd(d, VM_STATUS) & ST_NEEDS_RESET) {
		puts_line("ERR disk needs reset (disk reset <disk>)");
		return NULL;
	}
	if (d->version < 2 || d->qsize < 3 * d->nslots + 4) {
		puts_line("ERR evil needs a modern transport and a queue with 4 spare descriptors");
		return NULL;
	}
	return d;
}

/* The request header of the evil request: type and sector. */
static void evil_header(const struct disk *d, u32 type)
{
	volatile u32 *h = (volatile u32 *)(uptr)evil_hdr_addr(d);
	h[0] = type;
	h[1] = 0;
	*(volatile u64 *)(h + 2) = 0;
	*(volatile u8 *)(uptr)evil_status_addr(d) = 0xff;
	memset((void *)(uptr)evil_buf_addr(d), 0, 512);
}

static void set_desc(const struct disk *d, unsigned i, u64 addr, u32 len, u16 flags, u16 next)
{
	volatile struct vdesc *v = desc(d);
	v[i].addr = addr;
	v[i].len = len;
	v[i].flags = flags;
	v[i].next = next;
}

/* Makes the chain at head available and notifies, whatever
 * VIRTQ_USED_F_NO_NOTIFY says: the point is that the device looks. */
static void evil_publish(struct disk *d, u16 head)
{
	avail_ring(d)[d->avail_idx % d->qsize] = head;
	d->avail_idx++;
	barrier();
	*avail_idx(d) = d->avail_idx;
	d->published = d->avail_idx;
	mfence();
	disk_wr(d, VM_QUEUE_NOTIFY, 0);
}

/* What the device did within the disk timeout (`disk timeout`): completed
 * something (the used index moved), asked for a reset, or neither. */
struct outcome {
	const char *result; /* "completed", "needs_reset" or "silent" */
	u32 status;         /* status byte of a completion */
	u32 used_len;       /* its used length */
	u32 dev_status, isr;
	u64 usec;
};

static void watch(struct disk *d, struct outcome *o)
{
	const struct clock *c = disks.clk;
	u64 t0 = rdtsc(), limit = ms_to_tsc(c, disks.timeout_ms);
	o->result = "silent";
	o->status = 0;
	o->used_len = 0;
	for (;;) {
		u16 idx = *used_idx(d);
		if (idx != d->used_seen) {
			barrier();
			o->used_len = used_ring(d)[2 * (d->used_seen % d->qsize) + 1];
			o->status = *(volatile u8 *)(uptr)evil_status_addr(d);
			d->used_seen = idx; /* consumed here, not counted as bogus later */
			o->result = "completed";
			break;
		}
		if (disk_rd(d, VM_STATUS) & ST_NEEDS_RESET) {
			o->result = "needs_reset";
			break;
		}
		if (rdtsc() - t0 >= limit)
			break;
		heartbeat_tick();
		tsc_delay(c, 100);
	}
	o->usec = (rdtsc() - t0) * 1000 / c->tsc_khz;
	o->dev_status = disk_rd(d, VM_STATUS);
	o->isr = disk_rd(d, VM_INT_STATUS);
}

static void report(const char *kind, const struct disk *d, const char *variant, const struct outcome *o)
{
	char nb[24];
	struct line l;
	l_init(&l);
	l_str(&l, "EVIL ");
	l_str(&l, kind);
	l_str(&l, " disk=");
	l_u64(&l, d->index);
	l_str(&l, " variant=");
	l_str(&l, variant);
	l_str(&l, " result=");
	l_str(&l, o->result);
	l_str(&l, " status=");
	l_str(&l, o->result[0] == 'c' ? blk_status_name(o->status, nb) : "-");
	l_str(&l, " used_len=");
	l_u64(&l, o->used_len);
	l_str(&l, " dev_status=");
	l_hex(&l, o->dev_status);
	l_str(&l, " isr=");
	l_hex(&l, o->isr);
	l_str(&l, " usec=");
	l_u64(&l, o->usec);
	l_emit(&l);
}

/* Top of the highest RAM region: `edge` straddles it. */
static u64 ram_top(const struct bootinfo *bi)
{
	u64 top = 0;
	for (unsigned i = 0; i < bi->nr_e820; i++)
		if (bi->e820[i].type == 1 && bi->e820[i].addr + bi->e820[i].size > top)
			top = bi->e820[i].addr + bi->e820[i].size;
	return top;
}

/* evil oob: a read whose data buffer is not guest RAM. */
static void evil_oob(const struct bootinfo *bi, struct disk *d, const char *v)
{
	u64 addr;
	if (streq(v, "high"))
		addr = 1ull << 40; /* 1 TiB: far above any RAM */
	else if (streq(v, "edge"))
		addr = ram_top(bi) - 256; /* half in RAM, half beyond its end */
	else if (streq(v, "hole"))
		addr = d->base; /* the device's own register window */
	else if (streq(v, "wrap"))
		addr = 0xffffffffffffff00ull; /* +512 wraps around 2^64 */
	else {
		puts_line("ERR usage: evil oob <disk> high|edge|hole|wrap");
		return;
	}
	unsigned e = 3 * d->nslots;
	evil_header(d, BLK_T_IN);
	set_desc(d, e, evil_hdr_addr(d), 16, VD_NEXT, e + 1);
	set_desc(d, e + 1, addr, 512, VD_NEXT | VD_WRITE, e + 2);
	set_desc(d, e + 2, evil_status_addr(d), 1, VD_WRITE, 0);
	evil_publish(d, e);
	struct outcome o;
	watch(d, &o);
	report("oob", d, v, &o);
}

/* evil loop: a chain whose NEXT leads back into itself. Every descriptor
 * is device-readable, so that the only fault is the loop. */
static void evil_loop(struct disk *d, const char *v)
{
	unsigned e = 3 * d->nslots;
	evil_header(d, BLK_T_OUT);
	if (streq(v, "self")) {
		set_desc(d, e, evil_hdr_addr(d), 16, VD_NEXT, e);
	} else if (streq(v, "pair")) {
		set_desc(d, e, evil_hdr_addr(d), 16, VD_NEXT, e + 1);
		set_desc(d, e + 1, evil_buf_addr(d), 512, VD_NEXT, e);
	} else {
		puts_line("ERR usage: evil loop <disk> self|pair");
		return;
	}
	evil_publish(d, e);
	struct outcome o;
	watch(d, &o);
	report("loop", d, v, &o);
}

/* evil long: `ring` chains every descriptor of the table, the last back
 * to the first, so the chain is longer than the queue; `beyond` ends in a
 * NEXT past the table; `full` is the legal limit, a read through every
 * descriptor of the table (header, qsize-2 data buffers, status), which a
 * device must complete. */
static void evil_long(struct disk *d, const char *v)
{
	unsigned q = d->qsize, e = 3 * d->nslots;
	u16 head;
	if (streq(v, "ring")) {
		evil_header(d, BLK_T_OUT);
		set_desc(d, 0, evil_hdr_addr(d), 16, VD_NEXT, 1);
		for (unsigned i = 1; i < q; i++)
			set_desc(d, i, evil_buf_addr(d), 512, VD_NEXT, (i + 1) % q);
		head = 0;
	} else if (streq(v, "beyond")) {
		evil_header(d, BLK_T_OUT);
		set_desc(d, e, evil_hdr_addr(d), 16, VD_NEXT, e + 1);
		set_desc(d, e + 1, evil_buf_addr(d), 512, VD_NEXT, q + 5);
		head = e;
	} else if (streq(v, "full")) {
		evil_header(d, BLK_T_IN);
		set_desc(d, 0, evil_hdr_addr(d), 16, VD_NEXT, 1);
		for (unsigned i = 1; i < q - 1; i++)
			set_desc(d, i, evil_buf_addr(d), 512, VD_NEXT | VD_WRITE, i + 1);
		set_desc(d, q - 1, evil_status_addr(d), 1, VD_WRITE, 0);
		head = 0;
	} else {
		puts_line("ERR usage: evil long <disk> ring|beyond|full");
		return;
	}
	evil_publish(d, head);
	struct outcome o;
	watch(d, &o);
	report("long", d, v, &o);
}

/* evil idx: the avail index jumps ahead by more than the queue size, or
 * moves backwards, with no new entries behind it. */
static void evil_idx(struct disk *d, const char *v)
{
	u16 to;
	if (streq(v, "jump"))
		to = d->avail_idx + d->qsize + 1;
	else if (streq(v, "back"))
		to = d->avail_idx - 1;
	else {
		puts_line("ERR usage: evil idx <disk> jump|back");
		return;
	}
	barrier();
	*avail_idx(d) = to;
	mfence();
	disk_wr(d, VM_QUEUE_NOTIFY, 0);
	struct outcome o;
	watch(d, &o);
	report("idx", d, v, &o);
}

/* evil flood: n QueueNotify writes as fast as the CPU can issue them,
 * with nothing new on the ring, then one GET_ID to show the queue still
 * answers. */
static void evil_flood(struct disk *d, u64 n, u64 queue)
{
	const struct clock *c = disks.clk;
	u64 t0 = rdtsc();
	for (u64 i = 0; i < n; i++)
		disk_wr(d, VM_QUEUE_NOTIFY, (u32)queue);
	u64 usec = (rdtsc() - t0) * 1000 / c->tsc_khz;
	u32 st;
	int ok = disk_get_id(d, &st);
	u32 dev = disk_rd(d, VM_STATUS);
	char nb[24];
	struct line l;
	l_init(&l);
	l_str(&l, "EVIL flood disk=");
	l_u64(&l, d->index);
	l_str(&l, " queue=");
	l_u64(&l, queue);
	l_str(&l, " notifies=");
	l_u64(&l, n);
	l_str(&l, " usec=");
	l_u64(&l, usec);
	l_str(&l, " ns_per_notify=");
	l_u64(&l, n ? usec * 1000 / n : 0);
	l_str(&l, " result=");
	l_str(&l, ok ? "ok" : dev & ST_NEEDS_RESET ? "needs_reset" : "failed");
	l_str(&l, " status=");
	l_str(&l, blk_status_name(st, nb));
	l_str(&l, " dev_status=");
	l_hex(&l, dev);
	l_emit(&l);
}

void evil_cmd(const struct bootinfo *bi, char **argv, int argc)
{
	const char *kind = argc > 1 ? argv[1] : "";
	struct disk *d;
	u64 n, queue = 0;
	if (streq(kind, "flood") && (argc == 4 || argc == 5)) {
		if (!parse_u64(argv[3], &n) || n > 100000000ull || (argc == 5 && (!parse_u64(argv[4], &queue) || queue > 0xffffffffull))) {
			puts_line("ERR usage: evil flood <disk> <n <= 100000000> [queue]");
			return;
		}
		if ((d = evil_disk(argv[2])))
			evil_flood(d, n, queue);
		return;
	}
	if (argc != 4) {
		puts_line("ERR usage: evil oob|loop|long|idx <disk> <variant> | evil flood <disk> <n> [queue]");
		return;
	}
	if (!streq(kind, "oob") && !streq(kind, "loop") && !streq(kind, "long") && !streq(kind, "idx")) {
		puts_line("ERR usage: evil oob|loop|long|idx <disk> <variant> | evil flood <disk> <n> [queue]");
		return;
	}
	if (!(d = evil_disk(argv[2])))
		return;
	if (streq(kind, "oob"))
		evil_oob(bi, d, argv[3]);
	else if (streq(kind, "loop"))
		evil_loop(d, argv[3]);
	else if (streq(kind, "long"))
		evil_long(d, argv[3]);
	else
		evil_idx(d, argv[3]);
}
