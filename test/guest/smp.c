/* IDT set-up and AP bring-up, done by the BSP at CPL3 (native speed): the
 * APs' TSSs and GDT descriptors are prepared here so that their CPL0 path
 * in entry.S is a handful of instructions. */
#include "guest.h"

extern u8 idt[], gdt[], ap_tss[], ap_kstacks[];
extern volatile u32 ap_online;
extern char exc_stubs[], k_sys_entry[];
extern char irq_timer[], irq_serial[], irq_disk[], irq_eoi[], irq_spurious[];
extern char ap_tramp16[], ap_tramp16_end[];

static void set_gate(unsigned vec, void *handler, unsigned dpl)
{
	u64 h = (uptr)handler;
	u8 *g = idt + 16 * vec;
	u64 lo = (h & 0xffff) | ((u64)SEL_KCODE64 << 16) | ((u64)(0x8e | dpl << 5) << 40) |
		 ((h >> 16) & 0xffff) << 48;
	*(u64 *)g = lo;
	*(u64 *)(g + 8) = h >> 32;
}

void idt_init(void)
{
	for (unsigned v = 0; v < 256; v++)
		set_gate(v, irq_eoi, 0);
	for (unsigned v = 0; v < 32; v++)
		set_gate(v, exc_stubs + v * EXC_STUB_SIZE, 0);
	set_gate(3, k_sys_entry, 3);
	set_gate(VEC_TIMER, irq_timer, 0);
	set_gate(VEC_SERIAL, irq_serial, 0);
	set_gate(VEC_DISK, irq_disk, 0);
	set_gate(VEC_SPURIOUS, irq_spurious, 0);
}

static void set_tss_desc(unsigned slot, u64 base)
{
	u8 *d = gdt + SEL_TSS0 + 16 * slot;
	memset(d, 0, 16);
	d[0] = 0x67;
	d[2] = base;
	d[3] = base >> 8;
	d[4] = base >> 16;
	d[5] = 0x89; /* present, 64-bit TSS, available */
	d[7] = base >> 24;
	*(u32 *)(d + 8) = base >> 32;
}

void smp_prepare(void)
{
	for (unsigned a = 0; a < MAX_AP_APICID; a++) {
		u8 *t = ap_tss + a * TSS_STRIDE;
		memset(t, 0, 104);
		*(u64 *)(t + 4) = (uptr)(ap_kstacks + (a + 1) * AP_KSTACK); /* RSP0 */
		*(u16 *)(t + 102) = 104;
		set_tss_desc(a + 1, (uptr)t);
	}
	memcpy((void *)AP_TRAMPOLINE, ap_tramp16, ap_tramp16_end - ap_tramp16);
}

#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_ASSERT (1u << 14)
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)

static void icr(u32 lo)
{
	mmio_wr32(LAPIC_BASE + LAPIC_ICR_HI, 0);
	mmio_wr32(LAPIC_BASE + LAPIC_ICR_LO, lo);
}

static int wait_aps(const struct clock *c, unsigned want, u64 us)
{
	u64 t0 = rdtsc(), d = us * c->tsc_khz / 1000;
	while (ap_online < want) {
		if (rdtsc() - t0 >= d)
			return 0;
		cpu_relax();
	}
	return 1;
}

u64 tsc_sipi; /* for diag: AP arrival times are relative to it */

/* INIT, then SIPI (again if needed) to every other CPU; waits up to ~1 s
 * for the described number of CPUs (none when the tables describe only the
 * BSP, 20 ms when there are no tables). Returns the CPUs online incl. BSP. */
unsigned smp_boot(const struct clock *c, unsigned described, int tables)
{
	unsigned want = described - 1;
	if (tables && !want)
		return 1;
	icr(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
	tsc_delay(c, 200); /* KVM handles INIT at once; hardware would want 10 ms */
	tsc_sipi = rdtsc();
	icr(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (AP_TRAMPOLINE >> 12));
	if (!want) {
		tsc_delay(c, 20000); /* no tables: a short look for undescribed CPUs */
	} else if (!wait_aps(c, want, 20000)) {
		icr(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (AP_TRAMPOLINE >> 12));
		wait_aps(c, want, 1000000);
	}
	return cpus_online();
}

unsigned cpus_online(void) { return 1 + ap_online; }
