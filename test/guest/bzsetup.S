/* Real-mode setup sectors of the bzImage packaging (Linux x86 boot
 * protocol 2.12). The protected-mode part that follows is the same image as
 * the PVH ELF, loaded at 0x100000 (not relocatable):
 *   0x100000  32-bit entry (ESI = boot_params)
 *   0x100200  64-bit entry (XLF_KERNEL_64, RSI = boot_params)
 * A 64-bit loader (vmmd) never runs this file's code. A 16-bit loader
 * (QEMU's option ROM under SeaBIOS) jumps to setup_entry in real mode: it
 * builds boot_params (header copy + BIOS E820 map), enters protected mode
 * and jumps to the 32-bit entry.
 *
 * SYSSIZE and INIT_SIZE are passed by the Makefile. */

#define BP_OFF 0x4000 /* boot_params, inside the setup segment (its heap) */
#define SMAP 0x534d4150

        .code16
        .section .text
        .globl _start
_start:
        cli
        hlt
        jmp _start
        .ascii "vmmd test guest: boot with a Linux boot protocol loader"

        .org 0x1f1
hdr_start:
setup_sects:    .byte (setup_end - _start) / 512 - 1
root_flags:     .word 0
syssize:        .long (SYSSIZE + 15) / 16
ram_size:       .word 0
vid_mode:       .word 0xffff
root_dev:       .word 0
boot_flag:      .word 0xaa55
        /* 0x200 */
        .byte 0xeb, setup_entry - 0x202 /* jmp short setup_entry */
        .ascii "HdrS"
version:        .word 0x020c
realmode_swtch: .long 0
start_sys_seg:  .word 0x1000
kernel_version: .word 0
type_of_loader: .byte 0
loadflags:      .byte 0x01          /* LOADED_HIGH */
setup_move_size: .word 0x8000
code32_start:   .long 0x100000
ramdisk_image:  .long 0
ramdisk_size:   .long 0
bootsect_kludge: .long 0
heap_end_ptr:   .word 0
ext_loader_ver: .byte 0
ext_loader_type: .byte 0
cmd_line_ptr:   .long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 0
min_alignment:  .byte 12
xloadflags:     .word 0x0001        /* XLF_KERNEL_64 */
cmdline_size:   .long 2047
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset: .long 0
payload_length: .long 0
setup_data:     .quad 0
pref_address:   .quad 0x100000
init_size:      .long INIT_SIZE
handover_offset: .long 0
hdr_end:

        /* offsets are checked by the Makefile (cmd_line_ptr 0x228, xloadflags 0x236, init_size 0x260) */
        .globl cmd_line_ptr, xloadflags, init_size, setup_end

setup_entry:
        cli
        cld
        mov %cs, %ax
        sub $0x20, %ax                  /* the segment of _start */
        mov %ax, %ds
        mov %ax, %es
        /* boot_params: zeroed, then the (loader-filled) header */
        mov $BP_OFF, %di
        mov $2048, %cx
        xor %ax, %ax
        rep stosw
        mov $hdr_start, %si
        mov $(BP_OFF + 0x1f1), %di
        mov $(hdr_end - hdr_start), %cx
        rep movsb
        /* E820 map from the BIOS */
        xor %ebx, %ebx
        xor %bp, %bp
        mov $(BP_OFF + 0x2d0), %di
1:      mov $0xe820, %eax
        mov $20, %ecx
        mov $SMAP, %edx
        int $0x15
        jc 2f
        cmp $SMAP, %eax
        jne 2f
        inc %bp
        add $20, %di
        cmp $128, %bp
        jae 2f
        test %ebx, %ebx
        jnz 1b
2:      mov %bp, %ax
        mov %al, BP_OFF + 0x1e8
        /* protected mode, flat segments, then the 32-bit entry */
        cli
        xor %esi, %esi
        mov %ds, %si
        shl $4, %esi
        leal tmp_gdt(%esi), %eax
        mov %eax, tmp_gdt_ptr + 2
        lgdtl tmp_gdt_ptr
        add $BP_OFF, %esi
        mov %cr0, %eax
        or $1, %eax
        mov %eax, %cr0
        mov $0x18, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %ax, %fs
        mov %ax, %gs
        ljmpl $0x10, $0x100000

        .balign 8
tmp_gdt:
        .quad 0
        .quad 0
        .quad 0x00cf9a000000ffff        /* 0x10: __BOOT_CS */
        .quad 0x00cf92000000ffff        /* 0x18: __BOOT_DS */
tmp_gdt_ptr:
        .word 31
        .long 0

        .balign 512
setup_end:

        .section .note.GNU-stack, "", @progbits
