/* TSC frequency, the LAPIC timer that wakes the idle BSP, and interrupt
 * routing for the COM1 receive interrupt. All of it from CPL3: the LAPIC
 * and IOAPIC pages are mapped user-accessible and every access is an exit
 * to KVM's in-kernel irqchip. */
#include "guest.h"

#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_SVR 0xf0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)

static u32 lapic_rd(u32 reg) { return mmio_rd32(LAPIC_BASE + reg); }
static void lapic_wr(u32 reg, u32 v) { mmio_wr32(LAPIC_BASE + reg, v); }

u64 ms_to_tsc(const struct clock *c, u64 ms) { return ms * c->tsc_khz; }

void tsc_delay(const struct clock *c, u64 us)
{
	u64 t0 = rdtsc(), d = us * c->tsc_khz / 1000;
	while (rdtsc() - t0 < d)
		cpu_relax();
}

/* KVM (and vmmd) report the TSC frequency in kHz in leaf 0x40000010 when
 * the hypervisor range reaches it (QEMU: with invtsc). */
static u64 tsc_khz_cpuid(void)
{
	u32 a, b, c, d;
	cpuid(0x40000000, 0, &a, &b, &c, &d);
	if (a < 0x40000010 || a > 0x400000ff)
		return 0;
	cpuid(0x40000010, 0, &a, &b, &c, &d);
	return a >= 100000 && a <= 20000000 ? a : 0; /* 100 MHz .. 20 GHz */
}

/* KVM's pvclock: the tsc_to_system_mul/tsc_shift pair that converts TSC
 * ticks to ns gives the exact TSC frequency. Enabled only long enough to
 * read one update (the MSR write is a CPL0 system call). */
static u8 pvclock[64] __attribute__((aligned(64)));

static u64 tsc_hz_kvmclock(void)
{
	u32 a, b, c, d;
	cpuid(0x40000000, 0, &a, &b, &c, &d);
	if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x4d || a < 0x40000001)
		return 0; /* not "KVMKVMKVM" */
	cpuid(0x40000001, 0, &a, &b, &c, &d);
	u32 msr = (a & (1u << 3)) ? 0x4b564d01 : (a & 1) ? 0x12 : 0;
	if (!msr)
		return 0;
	memset(pvclock, 0, sizeof(pvclock));
	sys_wrmsr(msr, (uptr)pvclock | 1);
	volatile u32 *ver = (volatile u32 *)pvclock;
	u32 mul = 0;
	s64 shift = 0;
	for (int tries = 0; tries < 1000; tries++) {
		u32 v = *ver;
		if (!v || (v & 1))
			continue;
		__asm__ volatile("" ::: "memory");
		mul = *(volatile u32 *)(pvclock + 24);
		shift = *(volatile signed char *)(pvclock + 28);
		__asm__ volatile("" ::: "memory");
		if (*ver == v)
			break;
		mul = 0;
	}
	sys_wrmsr(msr, 0);
	if (!mul)
		return 0;
	u64 hz = (1000000000ull << 32) / mul;
	return shift >= 0 ? hz >> shift : hz << -shift;
}

/* About 10 ms of PIT channel 2 (gate on, speaker off, mode 0). Each port
 * access is an exit (tens of µs here), so the end time is taken as the
 * middle of the last two polls. Returns 0 when there is no working PIT. */
static u64 tsc_hz_pit(void)
{
	const u32 count = 11932; /* 1193182 Hz * 10 ms */
	u8 p61 = inb(0x61);
	outb(0x61, (p61 & ~0x02) | 0x01);
	outb(0x43, 0xb0); /* channel 2, lobyte/hibyte, mode 0, binary */
	outb(0x42, count & 0xff);
	outb(0x42, count >> 8);
	u64 t0 = rdtsc(), prev = t0, now = t0;
	unsigned polls = 0;
	for (;;) {
		u8 v = inb(0x61);
		now = rdtsc();
		if (v & 0x20)
			break;
		prev = now;
		if (++polls > 200000) /* ~8 s at 40 µs per exit: no PIT */
			return 0;
	}
	outb(0x61, p61 & ~0x03);
	if (polls < 3) /* OUT2 was high right after programming: not a PIT */
		return 0;
	u64 t1 = prev + (now - prev) / 2;
	return (t1 - t0) * 100; /* ticks per 10 ms * 100 */
}

/* PIT channel 0 read back through the latch command, for machines without
 * port 0x61 (QEMU's microvm has a PIT but no speaker port, so channel 2's
 * gate cannot be opened). Channel 0 is reprogrammed to mode 2, count
 * 65536; its IRQ stays masked. About 20 ms. */
static u32 pit0_read(void)
{
	outb(0x43, 0x00); /* latch channel 0 */
	u32 lo = inb(0x40);
	return lo | (u32)inb(0x40) << 8;
}

static u64 tsc_hz_pit0(void)
{
	outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
	outb(0x40, 0);
	outb(0x40, 0);
	u64 ta = rdtsc();
	u32 first = pit0_read();
	u64 tb = rdtsc();
	u32 prev = first, ticks = 0;
	u64 t0 = ta + (tb - ta) / 2, t1 = 0;
	unsigned same = 0;
	while (ticks < 23864) { /* 20 ms at 1193182 Hz */
		ta = rdtsc();
		u32 cur = pit0_read();
		tb = rdtsc();
		if (cur == prev) {
			if (++same > 1000) /* not counting */
				return 0;
			continue;
		}
		same = 0;
		ticks += (prev - cur) & 0xffff; /* counts down, wraps at 65536 */
		prev = cur;
		t1 = ta + (tb - ta) / 2;
	}
	return (t1 - t0) * 1193182ull / ticks;
}

void clock_init(struct clock *c)
{
	memset(c, 0, sizeof(*c));
	u64 khz = tsc_khz_cpuid();
	if (khz) {
		c->tsc_khz = khz;
		c->tsc_hz = khz * 1000;
		c->source = "cpuid";
		return;
	}
	u64 hz = tsc_hz_kvmclock();
	if (hz > 10000000ull && hz < 100000000000ull) {
		c->tsc_hz = hz;
		c->tsc_khz = hz / 1000;
		c->source = "kvmclock";
		return;
	}
	hz = tsc_hz_pit();
	if (hz > 10000000ull && hz < 100000000000ull) {
		c->tsc_hz = hz;
		c->tsc_khz = hz / 1000;
		c->source = "pit";
		return;
	}
	hz = tsc_hz_pit0();
	if (hz > 10000000ull && hz < 100000000000ull) {
		c->tsc_hz = hz;
		c->tsc_khz = hz / 1000;
		c->source = "pit0";
		return;
	}
	c->tsc_hz = 2000000000ull;
	c->tsc_khz = 2000000;
	c->source = "assumed";
}

static void ioapic_route(u64 base, u32 pin, u32 low, u32 dest)
{
	volatile u32 *sel = (volatile u32 *)(uptr)base;
	volatile u32 *win = (volatile u32 *)(uptr)(base + 0x10);
	*sel = 0x11 + 2 * pin;
	*win = dest << 24;
	*sel = 0x10 + 2 * pin;
	*win = low;
}

static u32 ioapic_read(u64 base, u32 reg)
{
	*(volatile u32 *)(uptr)base = reg;
	return *(volatile u32 *)(uptr)(base + 0x10);
}

/* Routes a GSI to `vec` on the BSP (fixed, physical, edge) through the
 * IOAPIC that has it: the MADT's, or 0xfec00000 with GSI base 0 if none is
 * described. flags: MPS INTI polarity (3 = active low). op: IOAPIC_CHECK
 * only finds the pin, IOAPIC_ROUTE writes both halves of the entry,
 * IOAPIC_LOW only the low half (mask/unmask). Each redirection write can
 * be slow (QEMU's split irqchip recommits KVM's GSI routing, ~1 ms), hence
 * the choice. Returns 0 if no IOAPIC has the pin. */
int ioapic_route_gsi(const struct clock *c, const struct platform *pf, u32 gsi, u32 vec, u16 flags,
		     int masked, int op)
{
	struct ioapic_desc dflt = {0xfec00000ull, 0};
	const struct ioapic_desc *io = pf->nr_ioapics ? pf->ioapics : &dflt;
	unsigned n = pf->nr_ioapics ? pf->nr_ioapics : 1;
	for (unsigned i = 0; i < n; i++) {
		if (gsi < io[i].gsi_base || io[i].addr >= (4ull << 30))
			continue;
		u32 pin = gsi - io[i].gsi_base;
		u32 pins = ((ioapic_read(io[i].addr, 1) >> 16) & 0xff) + 1;
		if (pin >= pins)
			continue;
		u32 low = vec | ((flags & 3) == 3 ? 1u << 13 : 0) | (masked ? 1u << 16 : 0);
		if (op == IOAPIC_ROUTE) {
			ioapic_route(io[i].addr, pin, low, c->bsp_apicid);
		} else if (op == IOAPIC_LOW) {
			*(volatile u32 *)(uptr)io[i].addr = 0x10 + 2 * pin;
			*(volatile u32 *)(uptr)(io[i].addr + 0x10) = low;
		}
		return 1;
	}
	return 0;
}

/* Masks the 8259s and LINT0, enables the LAPIC, calibrates its timer
 * against the TSC and makes it periodic (10 ms, VEC_TIMER); routes ISA
 * IRQ 4 through the IOAPIC to VEC_SERIAL on the BSP. */
void irq_init(struct clock *c, const struct platform *pf)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	lapic_wr(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_wr(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_wr(LAPIC_LVT_ERROR, LVT_MASKED);
	lapic_wr(LAPIC_TPR, 0);
	c->bsp_apicid = lapic_rd(LAPIC_ID) >> 24;

	lapic_wr(LAPIC_TIMER_DIV, 0x3); /* divide by 16 */
	lapic_wr(LAPIC_LVT_TIMER, LVT_MASKED | VEC_TIMER);
	lapic_wr(LAPIC_TIMER_INIT, 0xffffffffu);
	u64 t0 = rdtsc();
	while (rdtsc() - t0 < c->tsc_hz / 500) /* 2 ms: the wake-up period need not be exact */
		cpu_relax();
	u64 ta = rdtsc();
	u32 cur = lapic_rd(LAPIC_TIMER_CUR);
	u64 tb = rdtsc();
	u64 dt = ta + (tb - ta) / 2 - t0;
	u64 counts = 0xffffffffu - (u64)cur;
	lapic_wr(LAPIC_TIMER_INIT, 0);
	if (cur && cur != 0xffffffffu && dt) {
		u64 lapic_hz = counts * (c->tsc_hz / 1000) / (dt / 1000 ? dt / 1000 : 1);
		if (lapic_hz >= 100000 && lapic_hz <= 100000000000ull) {
			c->lapic_period = lapic_hz / 100;
			lapic_wr(LAPIC_LVT_TIMER, LVT_PERIODIC | VEC_TIMER);
			lapic_wr(LAPIC_TIMER_INIT, (u32)c->lapic_period);
			c->idle_hlt = 1;
		}
	}

	u64 ioapic = pf->ioapic ? pf->ioapic : 0xfec00000ull;
	u32 pin = pf->serial_gsi - pf->ioapic_gsi_base;
	if (ioapic < (4ull << 30) && pin < 24) {
		u32 low = VEC_SERIAL; /* fixed, physical, edge, active high */
		if ((pf->serial_flags & 3) == 3)
			low |= 1u << 13; /* active low */
		if (((pf->serial_flags >> 2) & 3) == 3)
			low |= 1u << 15; /* level */
		ioapic_route(ioapic, pin, low, c->bsp_apicid);
		c->serial_irq = 1;
	}
	console_init_irq();
}
