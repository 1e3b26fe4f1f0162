package kvm

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine (the descriptor KVM_CREATE_VM returned).
type VM struct {
	fd fdOwner

	// slotPages remembers each memory slot's size, the one fact
	// GetDirtyLog needs to check a bitmap and KVM cannot report.
	slotMu    sync.Mutex
	slotPages map[uint32]uint64
}

// Close closes the VM descriptor. It is idempotent. The kernel frees the VM
// once its vCPUs are closed as well.
func (v *VM) Close() error { return v.fd.close("VM") }

// FD returns the raw descriptor, or -1 after Close. The VM still owns it.
func (v *VM) FD() int { return v.fd.raw() }

// CheckExtension runs KVM_CHECK_EXTENSION on the VM, which answers for this
// VM's type (some capabilities only have a meaningful value here).
func (v *VM) CheckExtension(c Cap) (int, error) {
	n, err := ioctlValue(&v.fd, "KVM_CHECK_EXTENSION", kvmCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", err, c)
	}
	return n, nil
}

// UserMemoryRegion mirrors struct kvm_userspace_memory_region.
type UserMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Memory region flags.
const (
	// MemLogDirtyPages is KVM_MEM_LOG_DIRTY_PAGES.
	MemLogDirtyPages uint32 = 1
	// MemReadonly is KVM_MEM_READONLY: guest writes exit as MMIO.
	MemReadonly uint32 = 2
)

// pageSize is the granularity of guest physical memory and of dirty bits.
const pageSize = 4096

// SetUserMemoryRegion runs KVM_SET_USER_MEMORY_REGION. A MemorySize of 0
// deletes the slot. Addresses and size must be page aligned.
func (v *VM) SetUserMemoryRegion(r UserMemoryRegion) error {
	const name = "KVM_SET_USER_MEMORY_REGION"
	if r.GuestPhysAddr%pageSize != 0 || r.MemorySize%pageSize != 0 || r.UserspaceAddr%pageSize != 0 {
		return fmt.Errorf("%s: slot %d: guest address %#x, size %#x and host address %#x must be multiples of %d",
			name, r.Slot, r.GuestPhysAddr, r.MemorySize, r.UserspaceAddr, pageSize)
	}
	if r.Flags&^(MemLogDirtyPages|MemReadonly) != 0 {
		return fmt.Errorf("%s: slot %d: unknown flags %#x", name, r.Slot, r.Flags)
	}
	v.slotMu.Lock()
	defer v.slotMu.Unlock()
	if err := ioctlNamed(&v.fd, name, kvmSetUserMemoryRegion, &r); err != nil {
		return fmt.Errorf("%w (slot %d gpa %#x size %#x)", err, r.Slot, r.GuestPhysAddr, r.MemorySize)
	}
	if v.slotPages == nil {
		v.slotPages = make(map[uint32]uint64)
	}
	if r.MemorySize == 0 {
		delete(v.slotPages, r.Slot)
	} else {
		v.slotPages[r.Slot] = r.MemorySize / pageSize
	}
	return nil
}

// SetTSSAddr runs KVM_SET_TSS_ADDR: three pages of guest physical address
// space Intel VMX needs for real-mode emulation; must not overlap memory.
func (v *VM) SetTSSAddr(addr uint64) error {
	_, err := ioctlValue(&v.fd, "KVM_SET_TSS_ADDR", kvmSetTSSAddr, uintptr(addr))
	return err
}

// SetIdentityMapAddr runs KVM_SET_IDENTITY_MAP_ADDR: one page of guest
// physical address space for the VMX identity page table.
func (v *VM) SetIdentityMapAddr(addr uint64) error {
	return ioctlNamed(&v.fd, "KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, &addr)
}

// CreateIRQChip runs KVM_CREATE_IRQCHIP: in-kernel PICs, IOAPIC and LAPICs.
// It must come before CreateVCPU.
func (v *VM) CreateIRQChip() error {
	_, err := ioctlValue(&v.fd, "KVM_CREATE_IRQCHIP", kvmCreateIRQChip, 0)
	return err
}

// PITSpeakerDummy is KVM_PIT_SPEAKER_DUMMY for CreatePIT2: KVM also emulates
// port 0x61 so guests probing the speaker do not exit to userspace.
const PITSpeakerDummy uint32 = 1

// pitConfig mirrors struct kvm_pit_config.
type pitConfig struct {
	Flags uint32
	Pad   [15]uint32
}

// CreatePIT2 runs KVM_CREATE_PIT2 (in-kernel i8254), after CreateIRQChip.
func (v *VM) CreatePIT2(flags uint32) error {
	c := pitConfig{Flags: flags}
	return ioctlNamed(&v.fd, "KVM_CREATE_PIT2", kvmCreatePIT2, &c)
}

// irqLevel mirrors struct kvm_irq_level.
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// IRQLine runs KVM_IRQ_LINE: sets the level of a GSI of the in-kernel
// irqchip. Edge-triggered sources pulse it (true then false).
func (v *VM) IRQLine(irq uint32, level bool) error {
	l := irqLevel{IRQ: irq}
	if level {
		l.Level = 1
	}
	if err := ioctlNamed(&v.fd, "KVM_IRQ_LINE", kvmIRQLine, &l); err != nil {
		return fmt.Errorf("%w (irq %d level %v)", err, irq, level)
	}
	return nil
}

// GetDirtyLog runs KVM_GET_DIRTY_LOG for slot into bitmap (bit i%64 of
// word i/64 is page i of the slot) and clears the kernel's log. The slot
// must have been set with MemLogDirtyPages through this VM, and bitmap must
// hold at least DirtyBitmapWords(slot size) words: the kernel writes that
// many whatever slice it is given.
func (v *VM) GetDirtyLog(slot uint32, bitmap []uint64) error {
	const name = "KVM_GET_DIRTY_LOG"
	v.slotMu.Lock()
	pages, ok := v.slotPages[slot]
	v.slotMu.Unlock()
	if !ok {
		return fmt.Errorf("%s: slot %d was not set through this VM", name, slot)
	}
	need := (pages + 63) / 64
	if uint64(len(bitmap)) < need {
		return fmt.Errorf("%s: slot %d: bitmap of %d words is too small for %d pages (need %d)", name, slot, len(bitmap), pages, need)
	}
	return v.fd.with(name, func(fd int) error {
		if err := getDirtyLog(fd, slot, bitmap); err != nil {
			return fmt.Errorf("%s: slot %d: %w", name, slot, err)
		}
		return nil
	})
}

// DirtyBitmapWords returns how many uint64 words a dirty bitmap for a slot
// of size bytes needs.
func DirtyBitmapWords(size uint64) int {
	pages := (size + pageSize - 1) / pageSize
	return int((pages + 63) / 64)
}

// CreateVCPU runs KVM_CREATE_VCPU for vCPU id and maps its kvm_run area.
// mmapSize is System.VCPUMmapSize().
func (v *VM) CreateVCPU(id int, mmapSize int) (*VCPU, error) {
	const name = "KVM_CREATE_VCPU"
	if id < 0 {
		return nil, fmt.Errorf("%s: negative vCPU id %d", name, id)
	}
	if mmapSize < sizeofKVMRun {
		return nil, fmt.Errorf("%s: vCPU %d: mmap size %d is smaller than struct kvm_run (%d)", name, id, mmapSize, sizeofKVMRun)
	}
	fd, err := ioctlValue(&v.fd, name, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("%w (vCPU %d)", err, id)
	}
	run, err := unix.Mmap(fd, 0, mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d (%d bytes): %w", id, mmapSize, err)
	}
	c := &VCPU{id: id, run: run}
	c.fd.fd = fd
	return c, nil
}
