/* virtio-mmio block devices, driven from CPL3: discovery (kernel command
 * line, ACPI DSDT, or a probe of QEMU microvm's transports), device set-up
 * for the modern (version 2) and legacy (version 1) register layouts, and a
 * small request engine: one split virtqueue per disk, up to MAX_SLOTS
 * requests in flight, each a fixed three-descriptor chain (header, data,
 * status). Completion by polling the used ring, or in irq mode by sleeping
 * in the idle call until the device's interrupt (or the 10 ms tick). */
#include "virtio.h"

struct disks disks;
static u8 disk_ctl[MAX_DISKS][DISK_CTL_SIZE] __attribute__((aligned(4096)));

static u32 rd(const struct disk *d, u32 reg) { return mmio_rd32(d->base + reg); }
static void wr(const struct disk *d, u32 reg, u32 v) { mmio_wr32(d->base + reg, v); }

/* ---- running time ------------------------------------------------------
 * Request timeouts count time the VM ran: a TSC jump of more than 1 s
 * between two looks (the VM was stopped, e.g. paused on an I/O error) is
 * not counted, so a request that the VMM completes after `cont` is not
 * declared lost. Waits look at least every 10 ms (the idle tick); 1 s and
 * not less because a starved vCPU on a loaded host also sees gaps of some
 * 100 ms, and those must count. */
static u64 run_last, run_acc;

u64 run_clock(void)
{
	u64 now = rdtsc(), dt = now - run_last;
	run_last = now;
	if (dt < disks.clk->tsc_khz * 1000)
		run_acc += dt;
	return run_acc;
}

/* ---- virtqueue (the ring accessors are in virtio.h) ------------------- */
void slot_submit(struct disk *d, unsigned s, u32 type, u64 sector, u32 bytes)
{
	slot_submit_at(d, s, type, sector, d->data + (u64)s * SLOT_BYTES, bytes);
}

void slot_submit_at(struct disk *d, unsigned s, u32 type, u64 sector, u64 addr, u32 bytes)
{
	struct slot *sl = &d->slot[s];
	volatile u32 *h = (volatile u32 *)(uptr)hdr_addr(d, s);
	h[0] = type;
	h[1] = 0;
	*(volatile u64 *)(h + 2) = sector;
	*(volatile u8 *)(uptr)status_addr(d, s) = 0xff; /* a device that never writes it shows up */
	volatile struct vdesc *v = desc(d);
	u16 i = 3 * s;
	v[i].addr = hdr_addr(d, s);
	v[i].len = 16;
	v[i].flags = VD_NEXT;
	if (bytes) {
		v[i].next = i + 1;
		v[i + 1].addr = addr;
		v[i + 1].len = bytes;
		v[i + 1].flags = VD_NEXT | (blk_type_out(type) ? 0 : VD_WRITE);
		v[i + 1].next = i + 2;
	} else {
		v[i].next = i + 2;
	}
	v[i + 2].addr = status_addr(d, s);
	v[i + 2].len = 1;
	v[i + 2].flags = VD_WRITE;
	v[i + 2].next = 0;
	avail_ring(d)[d->avail_idx % d->qsize] = i;
	d->avail_idx++;
	sl->state = SLOT_BUSY;
	sl->timed_out = 0;
	sl->type = type;
	sl->sector = sector;
	sl->bytes = bytes;
	sl->status = BLK_S_TIMEOUT;
	sl->t_submit = run_clock();
	d->requests++;
}

/* Publishes the new avail entries; notifies unless the device asked not to
 * be (VIRTQ_USED_F_NO_NOTIFY, re-read after a full fence). */
void disk_kick(struct disk *d)
{
	if (d->published == d->avail_idx)
		return;
	barrier();
	*avail_idx(d) = d->avail_idx;
	d->published = d->avail_idx;
	mfence();
	if (!(*used_flags(d) & 1))
		wr(d, VM_QUEUE_NOTIFY, 0);
}

/* Takes what the device put in the used ring. Returns the number of slots
 * that changed state (BUSY -> DONE, LOST -> FREE). Entries that name no
 * request in flight are counted in `bogus` and skipped. */
int disk_reap(struct disk *d)
{
	int n = 0;
	u16 idx = *used_idx(d);
	if ((u16)(idx - d->used_seen) > d->qsize) { /* nonsense index: resync */
		d->bogus++;
		d->used_seen = idx;
		return 0;
	}
	while (d->used_seen != idx) {
		barrier();
		u32 id = used_ring(d)[2 * (d->used_seen % d->qsize)];
		d->used_seen++;
		unsigned s = id / 3;
		if (id % 3 || s >= d->nslots) {
			d->bogus++;
			continue;
		}
		struct slot *sl = &d->slot[s];
		if (sl->state == SLOT_BUSY) {
			sl->status = *(volatile u8 *)(uptr)status_addr(d, s);
			sl->state = SLOT_DONE;
			if (sl->status != BLK_S_OK)
				d->errors++;
			n++;
		} else if (sl->state == SLOT_LOST) {
			sl->state = SLOT_FREE;
			n++;
		} else {
			d->bogus++;
		}
	}
	return n;
}

int disk_free_slot(struct disk *d)
{
	for (unsigned s = 0; s < d->nslots; s++)
		if (d->slot[s].state == SLOT_FREE)
			return s;
	return -1;
}

unsigned disk_lost_slots(const struct disk *d)
{
	unsigned n = 0;
	for (unsigned s = 0; s < d->nslots; s++)
		n += d->slot[s].state == SLOT_LOST;
	return n;
}

/* The caller is done with a DONE slot; a timed-out one stays the device's. */
void slot_release(struct disk *d, unsigned s)
{
	d->slot[s].state = d->slot[s].timed_out ? SLOT_LOST : SLOT_FREE;
}

int disk_wait(struct disk *d, u64 deadline)
{
	u64 tmo = disks.timeout_ms * disks.clk->tsc_khz;
	for (;;) {
		if (disk_reap(d))
			return 1;
		u64 now = run_clock();
		int busy = 0, expired = 0;
		for (unsigned s = 0; s < d->nslots; s++) {
			struct slot *sl = &d->slot[s];
			if (sl->state != SLOT_BUSY)
				continue;
			busy = 1;
			if (now - sl->t_submit >= tmo) {
				sl->state = SLOT_DONE;
				sl->timed_out = 1;
				sl->status = BLK_S_TIMEOUT;
				d->timeouts++;
				expired = 1;
			}
		}
		if (expired)
			return 1;
		if (!busy && now >= deadline)
			return 0;
		heartbeat_tick();
		if (disks.irq_mode && d->irq_on) {
			/* Acknowledge first, then look again: a completion after the
			 * acknowledgement raises the line anew, one before it is seen
			 * by the second look. The wake-up is the interrupt, or the
			 * 10 ms tick at worst. */
			u32 isr = rd(d, VM_INT_STATUS);
			if (isr)
				wr(d, VM_INT_ACK, isr);
			if (disk_reap(d))
				return 1;
			sys_idle();
		} else {
			cpu_relax();
		}
	}
}

/* ---- interrupts -------------------------------------------------------
 * Edge-triggered whatever the tables say (QEMU's DSDT says level): the CPL0
 * handler only counts and EOIs, it cannot quiet the device, so a level
 * interrupt would be re-raised until CPL3 runs, which it never would.
 * The IOAPIC is left alone until `disk mode irq` (boot only checks that
 * the pin exists): its writes are slow under QEMU's split irqchip. */
static int disk_ioapic(struct disk *d, int masked, int op)
{
	const struct platform *pf = disks.pf;
	u32 gsi = d->irq;
	u16 flags = 0;
	if (gsi < 16) {
		gsi = pf->isa_gsi[d->irq];
		flags = pf->isa_flags[d->irq] & 3; /* polarity only */
	}
	return ioapic_route_gsi(disks.clk, pf, gsi, VEC_DISK, flags, masked, op);
}

/* 0 if some disk has no routable interrupt (nothing is changed then). */
int disk_set_irq_mode(int on)
{
	for (unsigned i = 0; i < disks.n; i++)
		if (on && !disks.d[i].irq_routed)
			return 0;
	if (on && !disks.clk->idle_hlt)
		return 0;
	for (unsigned i = 0; i < disks.n; i++) {
		struct disk *d = &disks.d[i];
		*avail_flags(d) = on ? 0 : 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT while polling */
		if (d->irq_routed && d->irq_on != on) {
			/* the first unmask writes the whole entry, later ones the low half */
			disk_ioapic(d, !on, d->irq_programmed ? IOAPIC_LOW : IOAPIC_ROUTE);
			d->irq_programmed = 1;
			d->irq_on = on;
		}
		u32 isr = rd(d, VM_INT_STATUS); /* a stale ISR would hold the line high: no edge */
		if (isr)
			wr(d, VM_INT_ACK, isr);
	}
	disks.irq_mode = on;
	return 1;
}

/* ---- device set-up ---------------------------------------------------- */
static void warn(const struct disk *d, const char *what)
{
	struct line l;
	l_init(&l);
	l_str(&l, "GUEST-WARN virtio-mmio ");
	l_hex(&l, d->base);
	l_str(&l, ": ");
	l_str(&l, what);
	l_emit(&l);
}

static int fail(struct disk *d, const char *what)
{
	wr(d, VM_STATUS, rd(d, VM_STATUS) | ST_FAILED);
	warn(d, what);
	return 0;
}

static u64 cfg64(const struct disk *d, u32 off)
{
	u32 gen, lo, hi;
	int tries = 0;
	do {
		gen = d->version >= 2 ? rd(d, VM_CONFIG_GEN) : 0;
		lo = rd(d, VM_CONFIG + off);
		hi = rd(d, VM_CONFIG + off + 4);
	} while (d->version >= 2 && rd(d, VM_CONFIG_GEN) != gen && ++tries < 100);
	return (u64)hi << 32 | lo;
}

static int setup_queue(struct disk *d)
{
	wr(d, VM_QUEUE_SEL, 0);
	if (rd(d, d->version >= 2 ? VM_QUEUE_READY : VM_QUEUE_PFN))
		return fail(d, "queue 0 already in use");
	u32 max = rd(d, VM_QUEUE_NUM_MAX);
	if (max < 3)
		return fail(d, "queue 0 too small (QueueNumMax < 3)");
	d->qsize = max < QUEUE_MAX ? max : QUEUE_MAX;
	d->nslots = d->qsize / 3 < MAX_SLOTS ? d->qsize / 3 : MAX_SLOTS;
	memset((void *)(uptr)d->ctl, 0, DISK_CTL_SIZE);
	*avail_flags(d) = 1; /* polling until `disk mode irq` */
	wr(d, VM_QUEUE_NUM, d->qsize);
	if (d->version >= 2) {
		wr(d, VM_QUEUE_DESC_LO, (u32)d->ctl);
		wr(d, VM_QUEUE_DESC_HI, 0);
		wr(d, VM_QUEUE_AVAIL_LO, (u32)avail_addr(d));
		wr(d, VM_QUEUE_AVAIL_HI, 0);
		wr(d, VM_QUEUE_USED_LO, (u32)used_addr(d));
		wr(d, VM_QUEUE_USED_HI, 0);
		wr(d, VM_QUEUE_READY, 1);
	} else {
		/* legacy layout: used ring at the next QueueAlign boundary after
		 * the avail ring, i.e. ctl + 4 KiB for up to 64 entries */
		wr(d, VM_QUEUE_ALIGN, 4096);
		wr(d, VM_QUEUE_PFN, (u32)(d->ctl >> 12));
	}
	return 1;
}

static int disk_setup(struct disk *d)
{
	d->version = rd(d, VM_VERSION);
	wr(d, VM_STATUS, 0);
	for (int i = 0; i < 1000 && rd(d, VM_STATUS); i++)
		cpu_relax();
	wr(d, VM_STATUS, ST_ACKNOWLEDGE);
	wr(d, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);
	wr(d, VM_DEV_FEATURES_SEL, 0);
	d->offered = rd(d, VM_DEV_FEATURES);
	if (d->version >= 2) {
		wr(d, VM_DEV_FEATURES_SEL, 1);
		d->offered |= (u64)rd(d, VM_DEV_FEATURES) << 32;
	}
	u64 want = F_BLK_SEG_MAX | F_BLK_RO | F_BLK_BLK_SIZE | F_BLK_FLUSH;
	if (d->version >= 2) {
		if (!(d->offered & F_VERSION_1))
			return fail(d, "modern transport without VIRTIO_F_VERSION_1");
		want |= F_VERSION_1;
	}
	d->features = d->offered & want;
	if (d->version == 1)
		wr(d, VM_GUEST_PAGE_SIZE, 4096);
	wr(d, VM_DRV_FEATURES_SEL, 0);
	wr(d, VM_DRV_FEATURES, (u32)d->features);
	if (d->version >= 2) {
		wr(d, VM_DRV_FEATURES_SEL, 1);
		wr(d, VM_DRV_FEATURES, (u32)(d->features >> 32));
		wr(d, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
		if (!(rd(d, VM_STATUS) & ST_FEATURES_OK))
			return fail(d, "device refused FEATURES_OK");
	}
	if (!setup_queue(d))
		return 0;
	d->capacity = cfg64(d, 0);
	d->seg_max = d->features & F_BLK_SEG_MAX ? rd(d, VM_CONFIG + 12) : 0;
	d->blk_size = d->features & F_BLK_BLK_SIZE ? rd(d, VM_CONFIG + 20) : 512;
	d->ro = !!(d->features & F_BLK_RO);
	wr(d, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | (d->version >= 2 ? ST_FEATURES_OK : 0) | ST_DRIVER_OK);
	if (rd(d, VM_STATUS) & 0x40) /* DEVICE_NEEDS_RESET */
		return fail(d, "device needs reset after DRIVER_OK");
	d->irq_routed = disk_ioapic(d, 1, IOAPIC_CHECK);
	return 1;
}

int disk_reset(struct disk *d)
{
	/* Requests in flight are the old driver's: the device drops them, so
	 * every slot is free again (lost ones too). */
	for (unsigned s = 0; s < MAX_SLOTS; s++)
		d->slot[s].state = SLOT_FREE;
	d->avail_idx = d->published = d->used_seen = 0;
	if (!disk_setup(d))
		return 0;
	*avail_flags(d) = disks.irq_mode && d->irq_on ? 0 : 1;
	u32 isr = rd(d, VM_INT_STATUS);
	if (isr)
		wr(d, VM_INT_ACK, isr);
	return 1;
}

/* One request on its own: waits for a free slot (for the timeout when all
 * are held by timed-out requests), submits, waits for the completion or
 * the timeout. addr 0 = the slot's data buffer. Returns the status. */
u32 disk_single(struct disk *d, u32 type, u64 sector, u64 addr, u32 bytes)
{
	int s;
	u64 deadline = run_clock() + disks.timeout_ms * disks.clk->tsc_khz;
	while ((s = disk_free_slot(d)) < 0)
		if (!disk_wait(d, deadline))
			return BLK_S_BUSY;
	slot_submit_at(d, s, type, sector, addr ? addr : d->data + (u64)s * SLOT_BYTES, bytes);
	disk_kick(d);
	while (d->slot[s].state == SLOT_BUSY)
		disk_wait(d, 0);
	u32 st = d->slot[s].status;
	slot_release(d, s);
	return st;
}

/* GET_ID (20 bytes, into the control block): 1 on success, and d->id
 * holds the string; else *status says why. */
int disk_get_id(struct disk *d, u32 *status)
{
	u8 *buf = (u8 *)(uptr)idbuf_addr(d);
	memset(buf, 0, 20);
	*status = disk_single(d, BLK_T_GET_ID, 0, idbuf_addr(d), 20);
	if (*status != BLK_S_OK)
		return 0;
	unsigned i;
	for (i = 0; i < 20 && buf[i]; i++)
		d->id[i] = buf[i] > 0x20 && buf[i] < 0x7f ? buf[i] : '_';
	d->id[i] = 0;
	return 1;
}

/* ---- discovery -------------------------------------------------------- */
/* Linux's memparse: a number (0x hex or decimal) with an optional K/M/G. */
static const char *parse_size(const char *s, u64 *out)
{
	char num[24];
	unsigned n = 0;
	while (n < sizeof(num) - 1 && ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
				       (*s >= 'A' && *s <= 'F') || *s == 'x' || *s == 'X'))
		num[n++] = *s++;
	num[n] = 0;
	if (!parse_u64(num, out))
		return NULL;
	if (*s == 'K' || *s == 'k')
		*out <<= 10, s++;
	else if (*s == 'M' || *s == 'm')
		*out <<= 20, s++;
	else if (*s == 'G' || *s == 'g')
		*out <<= 30, s++;
	return s;
}

struct transport {
	u64 base, size;
	u32 irq;
};

#define MAX_TRANSPORTS 32

/* virtio_mmio.device=<size>@<base>:<irq>[:<id>] entries, in order. The
 * window must be below 4 GiB (what the page tables map) and not RAM. */
static unsigned from_cmdline(const struct bootinfo *bi, const char *c, struct transport *t)
{
	static const char key[] = "virtio_mmio.device=";
	unsigned n = 0;
	while (*c) {
		while (*c == ' ')
			c++;
		const char *w = c;
		while (*c && *c != ' ')
			c++;
		if ((unsigned long)(c - w) <= sizeof(key) - 1 || memcmp(w, key, sizeof(key) - 1))
			continue;
		const char *p = w + sizeof(key) - 1;
		u64 size, base, irq;
		int ok = (p = parse_size(p, &size)) && *p++ == '@' && (p = parse_size(p, &base)) &&
			 *p++ == ':' && (p = parse_size(p, &irq)) && (p == c || *p == ':');
		if (!ok || !size || size > (1ull << 30) || base < (1ull << 20) || base + size > (4ull << 30) ||
		    ram_contains(bi, base, base + 1) || irq > 255) {
			struct line l;
			l_init(&l);
			l_str(&l, "GUEST-WARN bad ");
			l_strn(&l, w, c - w < 200 ? c - w : 200);
			l_str(&l, " (want <size>@<base below 4 GiB, not RAM>:<irq>)");
			l_emit(&l);
			continue;
		}
		if (n < MAX_TRANSPORTS) {
			t[n].base = base;
			t[n].size = size;
			t[n].irq = irq;
			n++;
		}
	}
	return n;
}

/* QEMU describes its transports in the DSDT as devices with _HID
 * "LNRO0005" whose _CRS holds a Memory32Fixed (0x86) and an extended
 * Interrupt (0x89) descriptor; both are found by scanning the bytes after
 * each _HID string (no AML interpreter). */
static unsigned from_dsdt(u64 dsdt, struct transport *t)
{
	unsigned n = 0;
	if (!dsdt || dsdt >= (4ull << 30) || memcmp((void *)(uptr)dsdt, "DSDT", 4))
		return 0;
	u32 len = mem_rd32(dsdt + 4);
	if (len < 36 || len > (1u << 20))
		return 0;
	const u8 *b = (const u8 *)(uptr)dsdt;
	for (u32 i = 36; i + 8 <= len && n < MAX_TRANSPORTS; i++) {
		if (memcmp(b + i, "LNRO0005", 8))
			continue;
		u64 base = 0, size = 0;
		int irq = -1;
		for (u32 j = i + 8; j + 9 <= len && j < i + 200; j++) {
			if (j > i + 8 && !memcmp(b + j, "LNRO0005", 8))
				break;
			if (!base && b[j] == 0x86 && b[j + 1] == 9 && b[j + 2] == 0) {
				base = mem_rd32(dsdt + j + 4);
				size = mem_rd32(dsdt + j + 8);
			} else if (irq < 0 && b[j] == 0x89 && b[j + 1] >= 6 && b[j + 2] == 0 && b[j + 4] >= 1) {
				irq = mem_rd32(dsdt + j + 5);
			}
			if (base && irq >= 0)
				break;
		}
		if (base >= (3ull << 30) && base < (4ull << 30) && irq >= 0 && irq < 256) {
			t[n].base = base;
			t[n].size = size;
			t[n].irq = irq;
			n++;
		}
		i += 7;
	}
	return n;
}

/* Without a command line entry or a DSDT, QEMU microvm's fixed layout: 512-byte transports from
 * 0xfeb00000, IRQ 24+i with a second IOAPIC (GSI base 24), else 16+i with
 * ACPI, else 5+i (hw/i386/microvm.c). Stops at the first missing magic. */
static unsigned from_probe(const struct platform *pf, struct transport *t)
{
	u32 irq = pf->acpi ? 16 : 5;
	for (unsigned i = 0; i < pf->nr_ioapics; i++)
		if (pf->ioapics[i].gsi_base == 24)
			irq = 24;
	unsigned n;
	for (n = 0; n < MAX_TRANSPORTS; n++) {
		u64 base = 0xfeb00000ull + 512ull * n;
		if (mmio_rd32(base + VM_MAGIC) != VIRTIO_MAGIC)
			break;
		t[n].base = base;
		t[n].size = 512;
		t[n].irq = irq + n;
	}
	return n;
}

void disk_line(const struct disk *d, const char *prefix)
{
	struct line l;
	l_init(&l);
	l_str(&l, prefix);
	l_str(&l, "index=");
	l_u64(&l, d->index);
	l_str(&l, " base=");
	l_hex(&l, d->base);
	l_str(&l, " irq=");
	l_u64(&l, d->irq);
	l_str(&l, " capacity=");
	l_u64(&l, d->capacity);
	l_str(&l, " ro=");
	l_u64(&l, d->ro);
	l_str(&l, " id=");
	l_str(&l, d->id);
	l_emit(&l);
}

/* Finds and sets up every virtio-blk device; prints nothing but warnings
 * (main prints the GUEST-DISK lines). */
void disk_init(const struct bootinfo *bi, const struct platform *pf, const struct clock *c)
{
	static struct transport t[MAX_TRANSPORTS];
	memset(&disks, 0, sizeof(disks));
	disks.clk = c;
	disks.pf = pf;
	disks.timeout_ms = 5000; /* for GET_ID at boot */
	disks.seed = 1;
	run_last = rdtsc();
	unsigned n = from_cmdline(bi, bi->cmdline, t);
	int described = n > 0;
	int dsdt = pf->dsdt && pf->dsdt < (4ull << 30) && !memcmp((void *)(uptr)pf->dsdt, "DSDT", 4);
	if (!n && dsdt)
		n = from_dsdt(pf->dsdt, t);
	if (!n && !dsdt) /* a DSDT describes every transport QEMU populated */
		n = from_probe(pf, t);
	if (n && !ram_contains(bi, DISK_DATA_BASE, DISK_MEM_END)) {
		puts_line("GUEST-WARN no RAM at 5-13 MiB for disk buffers: disks ignored");
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		struct disk *d = &disks.d[disks.n];
		memset(d, 0, sizeof(*d));
		d->base = t[i].base;
		d->irq = t[i].irq;
		u32 magic = rd(d, VM_MAGIC), ver = rd(d, VM_VERSION), id = rd(d, VM_DEVICE_ID);
		if (magic != VIRTIO_MAGIC || (ver != 1 && ver != 2)) {
			warn(d, "no virtio-mmio transport (magic or version)");
			continue;
		}
		if (id != VIRTIO_ID_BLOCK) {
			if (described)
				warn(d, id ? "not a block device" : "no device behind the transport");
			continue;
		}
		if (disks.n == MAX_DISKS) {
			warn(d, "too many disks, ignored");
			continue;
		}
		d->index = disks.n;
		d->ctl = (uptr)disk_ctl[disks.n];
		d->data = DISK_DATA_BASE + disks.n * DISK_DATA_SIZE;
		if (!disk_setup(d))
			continue;
		disks.n++;
		u32 st;
		disk_get_id(d, &st); /* id stays empty if the device has none */
	}
	disks.timeout_ms = 30000;
}

unsigned disk_count(void) { return disks.n; }

void disk_print_all(void)
{
	for (unsigned i = 0; i < disks.n; i++)
		disk_line(&disks.d[i], "GUEST-DISK ");
}
