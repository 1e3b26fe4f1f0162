/* vmmd test guest: declarations shared by the CPL3 C files. */
#ifndef GUEST_H
#define GUEST_H

#include "layout.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long s64;
typedef unsigned long uptr;

#define NULL ((void *)0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- port and memory-mapped I/O (CPL3 with IOPL 3) ---- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
/* CPUID at CPL3 is not intercepted on PVM: it returns the host's values.
 * cpuid() therefore asks CPL0 (emulated, so KVM's guest CPUID table, i.e.
 * what the VMM set); native_cpuid() is the CPL3 instruction. */
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("int3" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(SYS_CPUID), "S"(leaf), "c"(sub) : "memory");
}
static inline void native_cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline u32 mmio_rd32(uptr a) { return *(volatile u32 *)a; }
static inline void mmio_wr32(uptr a, u32 v) { *(volatile u32 *)a = v; }
static inline u8 mem_rd8(u64 a) { return *(volatile u8 *)(uptr)a; }
static inline u16 mem_rd16(u64 a) { return *(volatile u16 *)(uptr)a; }
static inline u32 mem_rd32(u64 a) { return *(volatile u32 *)(uptr)a; }
static inline u64 mem_rd64(u64 a) { return *(volatile u64 *)(uptr)a; }

/* ---- CPL0 services (int3 system calls, see entry.S) ---- */
static inline void sys_idle(void) { __asm__ volatile("int3" : : "a"(SYS_IDLE) : "memory"); }
static inline void sys_wrmsr(u32 msr, u64 v)
{
	u32 fn = SYS_WRMSR; /* the service clobbers EAX */
	__asm__ volatile("int3" : "+a"(fn) : "c"(msr), "d"((u32)(v >> 32)), "b"((u32)v) : "memory");
}
static inline void __attribute__((noreturn)) sys_park(void)
{
	__asm__ volatile("int3" : : "a"(SYS_PARK) : "memory");
	__builtin_unreachable();
}
static inline void __attribute__((noreturn)) sys_triple_fault(void)
{
	__asm__ volatile("int3" : : "a"(SYS_TRIPLE) : "memory");
	__builtin_unreachable();
}

/* ---- libc bits (util.c) ---- */
void *memset(void *d, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
unsigned long strlen(const char *s);
int streq(const char *a, const char *b);
int parse_u64(const char *s, u64 *out);

/* ---- console (console.c) ---- */
#define LINE_MAX 1024
struct line {
	unsigned n;
	char b[LINE_MAX];
};
void l_init(struct line *l);
void l_str(struct line *l, const char *s);
void l_strn(struct line *l, const char *s, unsigned n);
void l_chr(struct line *l, char c);
void l_u64(struct line *l, u64 v);
void l_hex(struct line *l, u64 v);
void l_emit(struct line *l); /* appends '\n' and writes the line to COM1 */
void puts_line(const char *s);
void console_init_irq(void);
const char *console_poll(void); /* a complete input line, or NULL */

/* ---- boot information (boot.c) ---- */
#define MAX_E820 128
struct e820 {
	u64 addr, size;
	u32 type;
};
struct bootinfo {
	int protocol; /* BOOT_PVH or BOOT_BZIMAGE */
	u64 rsdp;     /* from the boot protocol, 0 if none */
	unsigned nr_e820;
	struct e820 e820[MAX_E820];
	u64 ram_bytes;
	char cmdline[LINE_MAX / 2];
	int valid;
};
void boot_parse(struct bootinfo *bi, int protocol, u64 ptr);
int ram_contains(const struct bootinfo *bi, u64 start, u64 end);

/* ---- firmware tables (acpi.c) ---- */
struct gas {
	u8 space, width, offset, access;
	u64 addr;
};
#define MAX_IOAPICS 8
struct ioapic_desc {
	u64 addr;
	u32 gsi_base;
};
struct platform {
	int acpi; /* RSDP found */
	unsigned nr_ioapics; /* from the MADT, in table order */
	struct ioapic_desc ioapics[MAX_IOAPICS];
	u32 isa_gsi[16];   /* ISA IRQ -> GSI (identity unless overridden) */
	u16 isa_flags[16]; /* MPS INTI flags from an override, 0 = ISA default */
	u64 dsdt;          /* 0 if none */
	unsigned madt_cpus, mp_cpus, described;
	u64 ioapic; /* 0 if not described */
	u32 ioapic_gsi_base;
	u32 serial_gsi;   /* GSI of ISA IRQ 4 */
	u16 serial_flags; /* MPS INTI flags from an override, 0 = ISA default */
	int has_reset;
	struct gas reset_reg;
	u8 reset_value;
	int has_sleep;
	struct gas sleep_ctl;
	u32 pm1a_cnt;
};
void platform_scan(struct platform *pf, u64 rsdp_hint);
void gas_write(const struct gas *g, u64 v);

/* ---- time and interrupts (timer.c) ---- */
struct clock {
	u64 tsc_hz;
	u64 tsc_khz;
	const char *source; /* "cpuid", "kvmclock", "pit", "pit0" or "assumed" */
	u64 lapic_period;   /* LAPIC timer initial count for 10 ms, 0 if none */
	int idle_hlt;       /* 1: idle with hlt, 0: spin */
	u32 bsp_apicid;
	int serial_irq;
};
void clock_init(struct clock *c);
void irq_init(struct clock *c, const struct platform *pf);
u64 ms_to_tsc(const struct clock *c, u64 ms);
enum { IOAPIC_CHECK, IOAPIC_ROUTE, IOAPIC_LOW };
int ioapic_route_gsi(const struct clock *c, const struct platform *pf, u32 gsi, u32 vec, u16 flags,
		     int masked, int op);
void tsc_delay(const struct clock *c, u64 us);
extern u64 timer_ticks, serial_irqs, disk_irqs;

/* ---- SMP (smp.c) ---- */
void idt_init(void);
void smp_prepare(void);
unsigned smp_boot(const struct clock *c, unsigned described, int tables);
extern u64 tsc_sipi, ap_arrival[MAX_AP_APICID];
unsigned cpus_online(void);

/* ---- workloads (work.c) ---- */
#define WORK_BASE (16ull << 20)
void work_cmd_mem(struct bootinfo *bi, char **argv, int argc);
void work_cmd_dirty(struct bootinfo *bi, char **argv, int argc);
/* Runs workloads until `until` (TSC); returns 1 if there is more work now. */
int work_step(const struct clock *c, u64 until);
void work_init(const struct clock *c);

/* ---- virtio-blk disks (virtio.c, disk.c) ---- */
void disk_init(const struct bootinfo *bi, const struct platform *pf, const struct clock *c);
unsigned disk_count(void);
void disk_print_all(void); /* the GUEST-DISK lines */
void disk_cmd(char **argv, int argc);
void heartbeat_tick(void); /* main.c: HB lines while a disk command waits */
void evil_cmd(const struct bootinfo *bi, char **argv, int argc); /* evil.c: hostile-driver tests */

#endif
