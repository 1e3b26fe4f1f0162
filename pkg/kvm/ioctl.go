package kvm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Pieces of an ioctl request number, as include/uapi/asm-generic/ioctl.h
// lays them out: dir<<30 | size<<16 | type<<8 | nr.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30

	iocSizeMask = 1<<14 - 1

	// kvmio is KVMIO, the ioctl type byte of every KVM request.
	kvmio = 0xAE
)

// ioc is the _IOC macro for KVMIO.
func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | (size&iocSizeMask)<<iocSizeShift | kvmio<<iocTypeShift | nr<<iocNRShift
}

// iocIO is _IO(KVMIO, nr).
func iocIO(nr uintptr) uintptr { return ioc(iocNone, nr, 0) }

// iocR is _IOR(KVMIO, nr, size).
func iocR(nr, size uintptr) uintptr { return ioc(iocRead, nr, size) }

// iocW is _IOW(KVMIO, nr, size).
func iocW(nr, size uintptr) uintptr { return ioc(iocWrite, nr, size) }

// iocWR is _IOWR(KVMIO, nr, size).
func iocWR(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }

// Sizes of the kernel structures named in request numbers. Go constants
// cannot call iocR and friends, so the requests below are spelled with the
// same arithmetic; ioctl_test.go checks every one against the helpers and
// layout_test.go checks these sizes against the Go types.
const (
	sizeofCPUID2           = 8
	sizeofMSRList          = 4
	sizeofMSRs             = 8
	sizeofUserMemoryRegion = 32
	sizeofU64              = 8
	sizeofIRQLevel         = 8
	sizeofIRQChip          = 520
	sizeofPITConfig        = 64
	sizeofPITState2        = 112
	sizeofClockData        = 48
	sizeofDirtyLog         = 16
	sizeofIRQFD            = 32
	sizeofIOEventFD        = 64
	sizeofRegs             = 144
	sizeofSregs            = 312
	sizeofFPU              = 416
	sizeofLAPICState       = 1024
	sizeofMPState          = 4
	sizeofVCPUEvents       = 64
	sizeofDebugRegs        = 128
	sizeofXSave            = 4096
	sizeofXCRs             = 392
	sizeofInterrupt        = 4
	sizeofMSI              = 32
	sizeofEnableCap        = 104
	sizeofKVMRun           = 2352
	sizeofGuestDebug       = 72
	sizeofTranslation      = 24
)

const (
	dirN  = iocNone << iocDirShift
	dirR  = iocRead << iocDirShift
	dirW  = iocWrite << iocDirShift
	dirRW = (iocRead | iocWrite) << iocDirShift
	typ   = kvmio << iocTypeShift
)

// System ioctls.
const (
	kvmGetAPIVersion          = dirN | typ | 0x00
	kvmCreateVM               = dirN | typ | 0x01
	kvmGetMSRIndexList        = dirRW | sizeofMSRList<<iocSizeShift | typ | 0x02
	kvmCheckExtension         = dirN | typ | 0x03
	kvmGetVCPUMmapSize        = dirN | typ | 0x04
	kvmGetSupportedCPUID      = dirRW | sizeofCPUID2<<iocSizeShift | typ | 0x05
	kvmGetEmulatedCPUID       = dirRW | sizeofCPUID2<<iocSizeShift | typ | 0x09
	kvmGetMSRFeatureIndexList = dirRW | sizeofMSRList<<iocSizeShift | typ | 0x0a
)

// VM ioctls.
const (
	kvmCreateVCPU          = dirN | typ | 0x41
	kvmGetDirtyLog         = dirW | sizeofDirtyLog<<iocSizeShift | typ | 0x42
	kvmSetUserMemoryRegion = dirW | sizeofUserMemoryRegion<<iocSizeShift | typ | 0x46
	kvmSetTSSAddr          = dirN | typ | 0x47
	kvmSetIdentityMapAddr  = dirW | sizeofU64<<iocSizeShift | typ | 0x48
	kvmCreateIRQChip       = dirN | typ | 0x60
	kvmIRQLine             = dirW | sizeofIRQLevel<<iocSizeShift | typ | 0x61
	kvmGetIRQChip          = dirRW | sizeofIRQChip<<iocSizeShift | typ | 0x62
	kvmSetIRQChip          = dirR | sizeofIRQChip<<iocSizeShift | typ | 0x63
	kvmIRQFD               = dirW | sizeofIRQFD<<iocSizeShift | typ | 0x76
	kvmCreatePIT2          = dirW | sizeofPITConfig<<iocSizeShift | typ | 0x77
	kvmIOEventFD           = dirW | sizeofIOEventFD<<iocSizeShift | typ | 0x79
	kvmSetClock            = dirW | sizeofClockData<<iocSizeShift | typ | 0x7b
	kvmGetClock            = dirR | sizeofClockData<<iocSizeShift | typ | 0x7c
	kvmGetPIT2             = dirR | sizeofPITState2<<iocSizeShift | typ | 0x9f
	kvmSetPIT2             = dirW | sizeofPITState2<<iocSizeShift | typ | 0xa0
	kvmSignalMSI           = dirW | sizeofMSI<<iocSizeShift | typ | 0xa5
	kvmEnableCap           = dirW | sizeofEnableCap<<iocSizeShift | typ | 0xa3
)

// vCPU ioctls.
const (
	kvmRun           = dirN | typ | 0x80
	kvmGetRegs       = dirR | sizeofRegs<<iocSizeShift | typ | 0x81
	kvmSetRegs       = dirW | sizeofRegs<<iocSizeShift | typ | 0x82
	kvmGetSregs      = dirR | sizeofSregs<<iocSizeShift | typ | 0x83
	kvmSetSregs      = dirW | sizeofSregs<<iocSizeShift | typ | 0x84
	kvmTranslate     = dirRW | sizeofTranslation<<iocSizeShift | typ | 0x85
	kvmInterrupt     = dirW | sizeofInterrupt<<iocSizeShift | typ | 0x86
	kvmGetMSRs       = dirRW | sizeofMSRs<<iocSizeShift | typ | 0x88
	kvmSetMSRs       = dirW | sizeofMSRs<<iocSizeShift | typ | 0x89
	kvmGetFPU        = dirR | sizeofFPU<<iocSizeShift | typ | 0x8c
	kvmSetFPU        = dirW | sizeofFPU<<iocSizeShift | typ | 0x8d
	kvmGetLAPIC      = dirR | sizeofLAPICState<<iocSizeShift | typ | 0x8e
	kvmSetLAPIC      = dirW | sizeofLAPICState<<iocSizeShift | typ | 0x8f
	kvmSetCPUID2     = dirW | sizeofCPUID2<<iocSizeShift | typ | 0x90
	kvmGetCPUID2     = dirRW | sizeofCPUID2<<iocSizeShift | typ | 0x91
	kvmGetMPState    = dirR | sizeofMPState<<iocSizeShift | typ | 0x98
	kvmSetMPState    = dirW | sizeofMPState<<iocSizeShift | typ | 0x99
	kvmNMI           = dirN | typ | 0x9a
	kvmSetGuestDebug = dirW | sizeofGuestDebug<<iocSizeShift | typ | 0x9b
	kvmGetVCPUEvents = dirR | sizeofVCPUEvents<<iocSizeShift | typ | 0x9f
	kvmSetVCPUEvents = dirW | sizeofVCPUEvents<<iocSizeShift | typ | 0xa0
	kvmGetDebugRegs  = dirR | sizeofDebugRegs<<iocSizeShift | typ | 0xa1
	kvmSetDebugRegs  = dirW | sizeofDebugRegs<<iocSizeShift | typ | 0xa2
	kvmSetTSCKHz     = dirN | typ | 0xa2
	kvmGetTSCKHz     = dirN | typ | 0xa3
	kvmGetXSave      = dirR | sizeofXSave<<iocSizeShift | typ | 0xa4
	kvmSetXSave      = dirW | sizeofXSave<<iocSizeShift | typ | 0xa5
	kvmGetXCRs       = dirR | sizeofXCRs<<iocSizeShift | typ | 0xa6
	kvmSetXCRs       = dirW | sizeofXCRs<<iocSizeShift | typ | 0xa7
	kvmKVMClockCtrl  = dirN | typ | 0xad
)

// ioctlRetry runs a non-blocking ioctl, retrying when a signal interrupted it.
// It must not be used for KVM_RUN, whose EINTR is a result the caller sees.
func ioctlRetry(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == 0 {
			return r, nil
		}
		if errno == unix.EINTR {
			continue
		}
		return r, errno
	}
}

// ErrClosed is wrapped by every method called on a closed System, VM or VCPU.
var ErrClosed = errors.New("kvm: file descriptor already closed")
