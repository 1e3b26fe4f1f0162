package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr runs a non-blocking ioctl whose argument is a pointer to arg. The
// pointer conversion happens inside the Syscall argument list, the one place
// the compiler keeps the pointee alive and unmoved for the call.
func ioctlPtr[T any](fd int, req uintptr, arg *T) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(arg)))
		if errno == 0 {
			return r, nil
		}
		if errno == unix.EINTR {
			continue
		}
		return r, errno
	}
}

// ioctlBuf runs a non-blocking ioctl whose argument is a variable-length
// structure marshalled into buf (kvm_cpuid2, kvm_msrs, kvm_msr_list).
func ioctlBuf(fd int, req uintptr, buf []byte) (uintptr, error) {
	if len(buf) == 0 {
		return 0, unix.EINVAL
	}
	return ioctlPtr(fd, req, &buf[0])
}

// dirtyLog mirrors struct kvm_dirty_log. The bitmap is held as a typed
// pointer, not a uintptr, so the garbage collector keeps it alive and a
// stack move cannot leave the kernel a stale address.
type dirtyLog struct {
	Slot     uint32
	Padding1 uint32
	Bitmap   unsafe.Pointer
}

// getDirtyLog runs KVM_GET_DIRTY_LOG into bitmap, which the caller has
// checked is large enough for the slot.
func getDirtyLog(fd int, slot uint32, bitmap []uint64) error {
	if len(bitmap) == 0 {
		return unix.EINVAL
	}
	d := dirtyLog{Slot: slot, Bitmap: unsafe.Pointer(&bitmap[0])}
	_, err := ioctlPtr(fd, kvmGetDirtyLog, &d)
	return err
}
