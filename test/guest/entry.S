/* vmmd test guest: the CPL0 stub.
 *
 * On the KVM of the development machines (PVM) every CPL0 instruction is
 * emulated (~1 µs each), so this file does as little as possible: page
 * tables, GDT and the BSP's TSS descriptor are static data; the IDT and the
 * APs' TSSs are filled in by the CPL3 code (native speed) before they are
 * needed. Everything else runs at CPL3 (IOPL 3 requested; port access
 * also allowed by the BSP's TSS I/O bitmap, see README.md).
 *
 * Entry points:
 *   pvh_start32   PVH (XEN_ELFNOTE_PHYS32_ENTRY): 32-bit, paging off,
 *                 EBX = hvm_start_info.
 *   bz_start32    0x100000, Linux 32-bit boot protocol: ESI = boot_params.
 *   bz_start64    0x100200, Linux 64-bit boot protocol: long mode, loader's
 *                 page tables and GDT, RSI = boot_params.
 *   ap_tramp16    copied to AP_TRAMPOLINE, real mode, started by SIPI.
 */
#include "layout.h"

#define CR0_VALUE 0x80000033 /* PG | NE | ET | MP | PE (EM, CD, NW clear) */
#define CR4_VALUE 0x620      /* OSXMMEXCPT | OSFXSR | PAE */
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define TSS0_LIMIT (104 + 8192)

/* ------------------------------------------------------------------ */
        .section .note.Xen, "a"
        .balign 4
        .long 4                 /* namesz */
        .long 8                 /* descsz */
        .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .quad pvh_start32       /* 8 bytes as in Linux's vmlinux; a 32-bit reader sees the low half */

/* ------------------------------------------------------------------ */
        .section .text.head, "ax"
        .code32
        .globl bz_start32
bz_start32:                     /* must be at 0x100000 */
        mov $0x01, %al
        outb %al, $0x80
        cli
        mov %esi, %ebp
        mov $BOOT_BZIMAGE, %edi
        lgdt gdt_ptr
        jmp common32

        .org 0x200
        .code64
        .globl bz_start64
bz_start64:                     /* must be at 0x100200 */
        mov $0x01, %al
        outb %al, $0x80
        cli
        mov $bsp_kstack_top, %esp       /* the 64-bit protocol promises no stack */
        mov %rsi, %rbp
        mov $BOOT_BZIMAGE, %edi
        lgdt gdt_ptr(%rip)
        mov $CR4_VALUE, %eax
        mov %rax, %cr4
        mov $pml4, %eax
        mov %rax, %cr3
        mov $CR0_VALUE, %eax
        mov %rax, %cr0
        pushq $SEL_KCODE64
        pushq $long64
        lretq

        .code32
        .globl pvh_start32
pvh_start32:
        mov $0x01, %al
        outb %al, $0x80
        cli
        mov %ebx, %ebp
        mov $BOOT_PVH, %edi
        lgdt gdt_ptr
        jmp common32

        /* EDI = boot protocol (BSP) or 0 (AP), EBP = boot information */
ap_start32:
        xor %edi, %edi
common32:
        mov $CR4_VALUE, %eax
        mov %eax, %cr4
        mov $pml4, %eax
        mov %eax, %cr3
        mov $MSR_EFER, %ecx
        rdmsr
        or $EFER_LME, %eax
        wrmsr
        mov $CR0_VALUE, %eax
        mov %eax, %cr0
        ljmp $SEL_KCODE64, $long64

        .code64
long64:
        mov $SEL_KDATA, %eax
        mov %eax, %ds
        mov %eax, %es
        mov %eax, %ss
        xor %eax, %eax
        mov %eax, %fs
        mov %eax, %gs
        test %edi, %edi
        jz ap64
        mov $0x02, %al
        outb %al, $0x80
        /* Point the BSP's TSS descriptor at tss0 (base < 4 GiB; type "available"). */
        mov $tss0, %eax
        mov %ax, gdt + SEL_TSS0 + 2
        shr $16, %eax
        mov %al, gdt + SEL_TSS0 + 4
        mov %ah, gdt + SEL_TSS0 + 7
        movb $0x89, gdt + SEL_TSS0 + 5
        mov $SEL_TSS0, %eax
        ltr %ax
        lidt idt_ptr(%rip)
        mov $bsp_kstack_top, %esp
        mov %rbp, %rsi
        pushq $(SEL_UDATA | 3)
        pushq $bsp_ustack_top
        pushq $USER_RFLAGS
        pushq $(SEL_UCODE64 | 3)
        pushq $user_bsp_entry
        iretq

ap64:
        mov $1, %eax
        cpuid
        shr $24, %ebx                   /* initial APIC ID */
        cmp $MAX_AP_APICID, %ebx
        jae park
        lidt idt_ptr(%rip)
        lea 1(%rbx), %eax
        shl $4, %eax
        add $SEL_TSS0, %eax
        ltr %ax                         /* descriptor and RSP0 prepared by the BSP */
        lea 1(%rbx), %eax
        imul $AP_KSTACK, %eax, %eax
        lea ap_kstacks(%rax), %rsp
        mov %ebx, %r15d                 /* APIC ID, for ap_user */
        lea 1(%rbx), %ecx
        imul $AP_USTACK, %ecx, %ecx
        lea ap_ustacks(%rcx), %rcx
        pushq $(SEL_UDATA | 3)
        pushq %rcx
        pushq $USER_RFLAGS
        pushq $(SEL_UCODE64 | 3)
        pushq $ap_user
        iretq

/* ------------------------------------------------------------------ */
/* CPL3 entry points. */
user_bsp_entry:                 /* RDI = boot protocol, RSI = start_info / boot_params */
        mov $0x03, %al
        outb %al, $0x80
        cld
        mov %rdi, %r12
        mov %rsi, %r13
        mov $__bss_start, %edi
        mov $__bss_end, %ecx
        sub %edi, %ecx
        xor %eax, %eax
        rep stosb
        mov %r12, %rdi
        mov %r13, %rsi
        call cmain
        ud2

ap_user:
        rdtsc
        shl $32, %rdx
        or %rdx, %rax
        mov %rax, ap_arrival(,%r15,8)
        lock incl ap_online(%rip)
        mov $SYS_PARK, %eax
        int3
        ud2

/* ------------------------------------------------------------------ */
/* CPL0 handlers; keep them short, every instruction is emulated.
 *
 * Services for CPL3 code: `int3` with a SYS_* code in EAX. PVM's emulator
 * cannot deliver `int n` in protected mode (it raises #UD), but exceptions
 * from CPL3 are delivered through the IDT, so #BP is the system call gate.
 * An int3 with any other EAX is reported like any other exception. */
        .globl k_sys_entry, irq_timer, irq_serial, irq_disk, irq_eoi, irq_spurious
k_sys_entry:
        cmp $SYS_IDLE, %eax
        je k_sys_idle
        cmp $SYS_PARK, %eax
        je park
        cmp $SYS_WRMSR, %eax
        je k_sys_wrmsr
        cmp $SYS_CPUID, %eax
        je k_sys_cpuid
        cmp $SYS_TRIPLE, %eax
        je k_sys_triple
        pushq $0
        pushq $3
        jmp exc_common

park:
        cli
1:      hlt
        jmp 1b

k_sys_idle:
        sti
        hlt
        cli
        iretq

k_sys_wrmsr:                    /* ECX = MSR, EDX:EBX = value */
        mov %ebx, %eax
        wrmsr
        iretq

k_sys_cpuid:                    /* ESI = leaf, ECX = subleaf; the VMM's CPUID, not the host's */
        mov %esi, %eax
        cpuid
        iretq

k_sys_triple:
        lidt null_idt_ptr(%rip)
        ud2
        jmp k_sys_triple

irq_timer:
        incq timer_ticks(%rip)
        jmp irq_eoi
irq_disk:
        incq disk_irqs(%rip)
        jmp irq_eoi
irq_serial:
        incq serial_irqs(%rip)
irq_eoi:
        push %rax
        xor %eax, %eax
        movabs %eax, LAPIC_BASE + LAPIC_EOI
        pop %rax
irq_spurious:
        iretq

/* Exception stubs: each pushes an error code (0 if the CPU did not) and
 * the vector, EXC_STUB_SIZE bytes apart. */
        .balign EXC_STUB_SIZE
        .globl exc_stubs
exc_stubs:
        .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .balign EXC_STUB_SIZE
        .if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
        .else
        pushq $0
        .endif
        pushq $\vec
        jmp exc_common
        .endr

/* Prints "GUEST-EXCEPTION vec=<dec> err=0x<hex> rip=0x<hex>[ cr2=0x<hex>]"
 * and halts with interrupts off. Stack: vec, err, rip, cs, rflags, rsp, ss. */
exc_common:
        cli
        cld
        lea msg_exc(%rip), %rsi
        call k_puts
        mov (%rsp), %rax
        call k_putdec
        lea msg_err(%rip), %rsi
        call k_puts
        mov 8(%rsp), %rax
        call k_puthex
        lea msg_rip(%rip), %rsi
        call k_puts
        mov 16(%rsp), %rax
        call k_puthex
        cmpq $14, (%rsp)
        jne 1f
        lea msg_cr2(%rip), %rsi
        call k_puts
        mov %cr2, %rax
        call k_puthex
1:      mov $'\n', %al
        call k_putc
        jmp park

k_putc:
        mov $0x3f8, %dx
        outb %al, %dx
        ret

k_puts:
        lodsb
        test %al, %al
        jz 1f
        call k_putc
        jmp k_puts
1:      ret

k_putdec:                       /* RAX < 1000 */
        mov $10, %ecx
        xor %edx, %edx
        div %ecx                /* eax = n/10, edx = n%10 */
        push %rdx
        test %eax, %eax
        jz 1f
        call k_putdec
1:      pop %rax
        add $'0', %al
        jmp k_putc

k_puthex:                       /* "0x" + hex without leading zeros */
        mov %rax, %rdi
        mov $'0', %al
        call k_putc
        mov $'x', %al
        call k_putc
        mov $60, %ecx
1:      mov %rdi, %rax          /* skip leading zero nibbles, keep the last */
        shr %cl, %rax
        and $15, %eax
        jnz 2f
        sub $4, %ecx
        jnz 1b
2:      mov %rdi, %rax
        shr %cl, %rax
        and $15, %eax
        mov hexdigits(%rax), %al
        call k_putc
        sub $4, %ecx
        jns 2b
        ret

/* ------------------------------------------------------------------ */
/* Real-mode AP trampoline, copied to AP_TRAMPOLINE by the BSP (CPL3). */
        .section .rodata.tramp, "a"
        .code16
        .globl ap_tramp16, ap_tramp16_end
ap_tramp16:
        cli
        lgdtl %cs:(ap_tramp_gdt_ptr - ap_tramp16)
        movl $0x11, %eax        /* ET | PE */
        movl %eax, %cr0
        ljmpl $SEL_KCODE32, $ap_start32
        .balign 4
ap_tramp_gdt_ptr:
        .word GDT_BYTES - 1
        .long gdt
ap_tramp16_end:
        .code64

/* ------------------------------------------------------------------ */
        .section .rodata
msg_exc: .asciz "GUEST-EXCEPTION vec="
msg_err: .asciz " err="
msg_rip: .asciz " rip="
msg_cr2: .asciz " cr2="
hexdigits: .ascii "0123456789abcdef"

/* ------------------------------------------------------------------ */
        .section .data
        .balign 16
        .globl gdt
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
        .quad 0x00cf92000000ffff        /* 0x10 kernel data */
        .quad 0x00cf9a000000ffff        /* 0x18 kernel code, 32-bit (AP trampoline) */
        .quad 0x00cff2000000ffff        /* 0x20 user data */
        .quad 0x00affa000000ffff        /* 0x28 user code, 64-bit */
        .quad 0x0000890000000000 + TSS0_LIMIT, 0 /* 0x30 BSP TSS, base set at boot */
        .fill (NR_TSS - 1) * 2, 8, 0    /* AP TSS descriptors, filled by the BSP */
gdt_end:

        .balign 8
        .word 0
gdt_ptr:
        .word GDT_BYTES - 1
        .quad gdt

        .balign 8
        .word 0
idt_ptr:
        .word 4095
        .quad idt

        .balign 8
        .word 0
null_idt_ptr:
        .word 0
        .quad 0

        .balign 16
        .globl tss0
tss0:                           /* 64-bit TSS of the BSP */
        .long 0
        .quad bsp_kstack_top    /* RSP0 */
        .fill 88, 1, 0
        .word 0
        .word 104               /* I/O permission bitmap right after the TSS */
        /* All ports allowed. PVM drops IOPL when it enters CPL3, and then
         * emulates a trapped port access only if the bitmap allows it. */
        .fill 8192, 1, 0
        .byte 0xff
tss0_end:

/* Identity map of 0-4 GiB with 2 MiB pages, Present|RW|User; 3-4 GiB uncached. */
        .section .data.pagetables, "aw"
        .balign 4096
        .globl pml4
pml4:
        .quad pdpt + 7
        .fill 511, 8, 0
pdpt:
        .quad pd + 0x0000 + 7
        .quad pd + 0x1000 + 7
        .quad pd + 0x2000 + 7
        .quad pd + 0x3000 + 7
        .fill 508, 8, 0
pd:
        .set i, 0
        .rept 1536
        .quad (i << 21) | 0x87
        .set i, i + 1
        .endr
        .rept 512
        .quad (i << 21) | 0x97
        .set i, i + 1
        .endr

/* ------------------------------------------------------------------ */
        .section .bss
        .balign 4096
        .globl idt, ap_online, ap_tss, timer_ticks, serial_irqs, disk_irqs, ap_arrival
idt:    .skip 4096
timer_ticks: .skip 8
serial_irqs: .skip 8
disk_irqs: .skip 8
ap_online: .skip 4
        .balign 8
ap_arrival: .skip 8 * MAX_AP_APICID       /* TSC when each AP reached CPL3 */
        .balign TSS_STRIDE
ap_tss: .skip MAX_AP_APICID * TSS_STRIDE

/* Stacks are not cleared by user_bsp_entry. */
        .section .stacks, "aw", @nobits
        .balign 4096
        .globl ap_kstacks, ap_ustacks
        .skip BSP_KSTACK
bsp_kstack_top:
        .skip BSP_USTACK
bsp_ustack_top:
ap_kstacks:                     /* AP with APIC ID a: top at ap_kstacks + (a+1)*AP_KSTACK */
        .skip MAX_AP_APICID * AP_KSTACK
ap_ustacks:
        .skip MAX_AP_APICID * AP_USTACK

        .section .note.GNU-stack, "", @progbits
