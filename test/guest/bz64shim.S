/* Test fixture, not part of the guest: a PVH ELF (linked at 4 MiB) that
 * plays a 64-bit Linux boot protocol loader, so that QEMU can exercise the
 * bzImage 64-bit entry that vmmd uses. QEMU loads the bzImage's
 * protected-mode part at 0x100000 with
 *   -device loader,file=$(OUT)/obj/image.bin,addr=0x100000,force-raw=on
 * and this shim, entered through PVH, turns hvm_start_info into
 * boot_params (E820, cmdline, RSDP) at BP, enters long mode with its own
 * GDT and page tables, and jumps to 0x100200 with RSI = BP and RSP = 0
 * (the protocol promises no stack). */

#define BP 0x7000

        .section .note.Xen, "a"
        .balign 4
        .long 4, 8, 18
        .asciz "Xen"
        .quad shim_start

        .text
        .code32
        .globl shim_start
shim_start:
        cli
        cld
        mov $BP, %edi
        xor %eax, %eax
        mov $1024, %ecx
        rep stosl
        mov 24(%ebx), %eax              /* cmdline_paddr (low half) */
        mov %eax, BP + 0x228
        mov 32(%ebx), %eax              /* rsdp_paddr */
        mov %eax, BP + 0x70
        mov 36(%ebx), %eax
        mov %eax, BP + 0x74
        mov 40(%ebx), %esi              /* memmap_paddr (low half) */
        mov 48(%ebx), %ecx              /* memmap_entries */
        cmp $128, %ecx
        jbe 1f
        mov $128, %ecx
1:      mov %cl, BP + 0x1e8
        mov $(BP + 0x2d0), %edi
2:      test %ecx, %ecx
        jz 3f
        movsl                           /* addr, size, type: 20 of the 24 bytes */
        movsl
        movsl
        movsl
        movsl
        add $4, %esi
        dec %ecx
        jmp 2b
3:      lgdt shim_gdt_ptr
        mov $0x20, %eax                 /* PAE */
        mov %eax, %cr4
        mov $shim_pml4, %eax
        mov %eax, %cr3
        mov $0xc0000080, %ecx
        rdmsr
        or $0x100, %eax
        wrmsr
        mov $0x80000011, %eax
        mov %eax, %cr0
        ljmp $0x08, $shim64

        .code64
shim64:
        mov $0x10, %eax
        mov %eax, %ds
        mov %eax, %es
        mov %eax, %ss
        mov $BP, %esi
        xor %esp, %esp
        mov $0x100200, %eax
        jmp *%rax

        .data
        .balign 8
shim_gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08 code64 */
        .quad 0x00cf92000000ffff        /* 0x10 data */
shim_gdt_ptr:
        .word 23
        .long shim_gdt

        .balign 4096
shim_pml4:
        .quad shim_pdpt + 3
        .fill 511, 8, 0
shim_pdpt:
        .quad shim_pd + 3
        .fill 511, 8, 0
shim_pd:                                /* first GiB, 2 MiB pages, supervisor only */
        .set i, 0
        .rept 512
        .quad (i << 21) | 0x83
        .set i, i + 1
        .endr

        .section .note.GNU-stack, "", @progbits
