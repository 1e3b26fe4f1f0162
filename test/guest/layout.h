/* Constants shared by the CPL0 stub (entry.S) and the CPL3 C code.
 * Keep this file free of C syntax outside the __ASSEMBLER__ guard. */
#ifndef LAYOUT_H
#define LAYOUT_H

/* GDT selectors. */
#define SEL_KCODE64 0x08
#define SEL_KDATA 0x10
#define SEL_KCODE32 0x18
#define SEL_UDATA 0x20 /* used with RPL 3: 0x23 */
#define SEL_UCODE64 0x28 /* used with RPL 3: 0x2b */
#define SEL_TSS0 0x30 /* BSP; AP with APIC ID a uses SEL_TSS0 + 16*(a+1) */

/* APs with an APIC ID >= MAX_AP_APICID are parked without being counted. */
#define MAX_AP_APICID 64
#define NR_TSS (MAX_AP_APICID + 1)
#define GDT_BYTES (SEL_TSS0 + 16 * NR_TSS)

#define TSS_STRIDE 128
#define AP_KSTACK 1024
#define AP_USTACK 512
#define BSP_KSTACK 4096
#define BSP_USTACK 65536

/* Real-mode AP trampoline: copied here, started by SIPI vector 0x08. */
#define AP_TRAMPOLINE 0x8000

/* Interrupt vectors. */
#define VEC_SERIAL 0x24
#define VEC_TIMER 0x40
#define VEC_DISK 0x50 /* every virtio-blk device, in `disk mode irq` */
#define VEC_SPURIOUS 0xff

/* System calls: `int3` from CPL3 with one of these in EAX (see entry.S). */
#define SYS_IDLE 0x53590001   /* sti; hlt; cli; return */
#define SYS_PARK 0x53590002   /* cli; hlt forever */
#define SYS_WRMSR 0x53590003  /* ECX = MSR, EDX:EBX = value */
#define SYS_TRIPLE 0x53590004 /* load an empty IDT and fault */
#define SYS_CPUID 0x53590005  /* ESI = leaf, ECX = subleaf; returns EAX..EDX */

/* Boot protocols, passed from the stub to cmain(). */
#define BOOT_PVH 1
#define BOOT_BZIMAGE 2

/* RFLAGS for CPL3: IOPL 3, IF 0, reserved bit 1. */
#define USER_RFLAGS 0x3002

/* Exception stubs are EXC_STUB_SIZE bytes apart, starting at exc_stubs. */
#define EXC_STUB_SIZE 16

#define LAPIC_BASE 0xfee00000
#define LAPIC_EOI 0xb0

#endif
