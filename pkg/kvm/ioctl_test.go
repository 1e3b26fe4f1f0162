package kvm

import (
	"strings"
	"testing"
)

// wantIoctls holds every request number the package uses: the C value
// printed by a program compiled against <linux/kvm.h>, and the same request
// rebuilt with the _IO/_IOR/_IOW/_IOWR helpers from the C macro's nr and size.
var wantIoctls = []struct {
	name   string
	got    uintptr
	helper uintptr
	c      uintptr
}{
	{"KVM_GET_API_VERSION", kvmGetAPIVersion, iocIO(0), 0xae00},
	{"KVM_CREATE_VM", kvmCreateVM, iocIO(0x1), 0xae01},
	{"KVM_GET_MSR_INDEX_LIST", kvmGetMSRIndexList, iocWR(0x2, 4), 0xc004ae02},
	{"KVM_CHECK_EXTENSION", kvmCheckExtension, iocIO(0x3), 0xae03},
	{"KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, iocIO(0x4), 0xae04},
	{"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, iocWR(0x5, 8), 0xc008ae05},
	{"KVM_GET_EMULATED_CPUID", kvmGetEmulatedCPUID, iocWR(0x9, 8), 0xc008ae09},
	{"KVM_GET_MSR_FEATURE_INDEX_LIST", kvmGetMSRFeatureIndexList, iocWR(0xa, 4), 0xc004ae0a},
	{"KVM_CREATE_VCPU", kvmCreateVCPU, iocIO(0x41), 0xae41},
	{"KVM_GET_DIRTY_LOG", kvmGetDirtyLog, iocW(0x42, 16), 0x4010ae42},
	{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, iocW(0x46, 32), 0x4020ae46},
	{"KVM_SET_TSS_ADDR", kvmSetTSSAddr, iocIO(0x47), 0xae47},
	{"KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, iocW(0x48, 8), 0x4008ae48},
	{"KVM_CREATE_IRQCHIP", kvmCreateIRQChip, iocIO(0x60), 0xae60},
	{"KVM_IRQ_LINE", kvmIRQLine, iocW(0x61, 8), 0x4008ae61},
	{"KVM_GET_IRQCHIP", kvmGetIRQChip, iocWR(0x62, 520), 0xc208ae62},
	{"KVM_SET_IRQCHIP", kvmSetIRQChip, iocR(0x63, 520), 0x8208ae63},
	{"KVM_IRQFD", kvmIRQFD, iocW(0x76, 32), 0x4020ae76},
	{"KVM_CREATE_PIT2", kvmCreatePIT2, iocW(0x77, 64), 0x4040ae77},
	{"KVM_IOEVENTFD", kvmIOEventFD, iocW(0x79, 64), 0x4040ae79},
	{"KVM_SET_CLOCK", kvmSetClock, iocW(0x7b, 48), 0x4030ae7b},
	{"KVM_GET_CLOCK", kvmGetClock, iocR(0x7c, 48), 0x8030ae7c},
	{"KVM_GET_PIT2", kvmGetPIT2, iocR(0x9f, 112), 0x8070ae9f},
	{"KVM_SET_PIT2", kvmSetPIT2, iocW(0xa0, 112), 0x4070aea0},
	{"KVM_SIGNAL_MSI", kvmSignalMSI, iocW(0xa5, 32), 0x4020aea5},
	{"KVM_ENABLE_CAP", kvmEnableCap, iocW(0xa3, 104), 0x4068aea3},
	{"KVM_RUN", kvmRun, iocIO(0x80), 0xae80},
	{"KVM_GET_REGS", kvmGetRegs, iocR(0x81, 144), 0x8090ae81},
	{"KVM_SET_REGS", kvmSetRegs, iocW(0x82, 144), 0x4090ae82},
	{"KVM_GET_SREGS", kvmGetSregs, iocR(0x83, 312), 0x8138ae83},
	{"KVM_SET_SREGS", kvmSetSregs, iocW(0x84, 312), 0x4138ae84},
	{"KVM_TRANSLATE", kvmTranslate, iocWR(0x85, 24), 0xc018ae85},
	{"KVM_INTERRUPT", kvmInterrupt, iocW(0x86, 4), 0x4004ae86},
	{"KVM_GET_MSRS", kvmGetMSRs, iocWR(0x88, 8), 0xc008ae88},
	{"KVM_SET_MSRS", kvmSetMSRs, iocW(0x89, 8), 0x4008ae89},
	{"KVM_GET_FPU", kvmGetFPU, iocR(0x8c, 416), 0x81a0ae8c},
	{"KVM_SET_FPU", kvmSetFPU, iocW(0x8d, 416), 0x41a0ae8d},
	{"KVM_GET_LAPIC", kvmGetLAPIC, iocR(0x8e, 1024), 0x8400ae8e},
	{"KVM_SET_LAPIC", kvmSetLAPIC, iocW(0x8f, 1024), 0x4400ae8f},
	{"KVM_SET_CPUID2", kvmSetCPUID2, iocW(0x90, 8), 0x4008ae90},
	{"KVM_GET_CPUID2", kvmGetCPUID2, iocWR(0x91, 8), 0xc008ae91},
	{"KVM_GET_MP_STATE", kvmGetMPState, iocR(0x98, 4), 0x8004ae98},
	{"KVM_SET_MP_STATE", kvmSetMPState, iocW(0x99, 4), 0x4004ae99},
	{"KVM_NMI", kvmNMI, iocIO(0x9a), 0xae9a},
	{"KVM_SET_GUEST_DEBUG", kvmSetGuestDebug, iocW(0x9b, 72), 0x4048ae9b},
	{"KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents, iocR(0x9f, 64), 0x8040ae9f},
	{"KVM_SET_VCPU_EVENTS", kvmSetVCPUEvents, iocW(0xa0, 64), 0x4040aea0},
	{"KVM_GET_DEBUGREGS", kvmGetDebugRegs, iocR(0xa1, 128), 0x8080aea1},
	{"KVM_SET_DEBUGREGS", kvmSetDebugRegs, iocW(0xa2, 128), 0x4080aea2},
	{"KVM_SET_TSC_KHZ", kvmSetTSCKHz, iocIO(0xa2), 0xaea2},
	{"KVM_GET_TSC_KHZ", kvmGetTSCKHz, iocIO(0xa3), 0xaea3},
	{"KVM_GET_XSAVE", kvmGetXSave, iocR(0xa4, 4096), 0x9000aea4},
	{"KVM_SET_XSAVE", kvmSetXSave, iocW(0xa5, 4096), 0x5000aea5},
	{"KVM_GET_XCRS", kvmGetXCRs, iocR(0xa6, 392), 0x8188aea6},
	{"KVM_SET_XCRS", kvmSetXCRs, iocW(0xa7, 392), 0x4188aea7},
	{"KVM_KVMCLOCK_CTRL", kvmKVMClockCtrl, iocIO(0xad), 0xaead},
}

func TestIoctlNumbers(t *testing.T) {
	for _, w := range wantIoctls {
		if w.got != w.c {
			t.Errorf("%s = %#x, C says %#x", w.name, w.got, w.c)
		}
		if w.helper != w.c {
			t.Errorf("%s rebuilt with the ioc helpers = %#x, C says %#x", w.name, w.helper, w.c)
		}
	}
	// The numbers the brief quotes, independently of the table above.
	for _, k := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_RUN", kvmRun, 0xAE80},
		{"KVM_GET_REGS", kvmGetRegs, 0x8090AE81},
		{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, 0x4020AE46},
		{"KVM_CREATE_VCPU", kvmCreateVCPU, 0xAE41},
		{"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, 0xC008AE05},
		{"_IOR(KVMIO, 0x81, 144)", iocR(0x81, 144), 0x8090AE81},
		{"_IOW(KVMIO, 0x46, 32)", iocW(0x46, 32), 0x4020AE46},
		{"_IOWR(KVMIO, 0x05, 8)", iocWR(0x05, 8), 0xC008AE05},
		{"_IO(KVMIO, 0x80)", iocIO(0x80), 0xAE80},
	} {
		if k.got != k.want {
			t.Errorf("%s = %#x, want %#x", k.name, k.got, k.want)
		}
	}
}

// wantCaps holds KVM_CAP_* values printed from <linux/kvm.h>.
var wantCaps = []struct {
	c   string
	v   uint32
	got uint32
}{
	{"KVM_CAP_IRQCHIP", 0, uint32(CapIRQChip)},
	{"KVM_CAP_HLT", 1, uint32(CapHLT)},
	{"KVM_CAP_USER_MEMORY", 3, uint32(CapUserMemory)},
	{"KVM_CAP_SET_TSS_ADDR", 4, uint32(CapSetTSSAddr)},
	{"KVM_CAP_EXT_CPUID", 7, uint32(CapExtCPUID)},
	{"KVM_CAP_CLOCKSOURCE", 8, uint32(CapClockSource)},
	{"KVM_CAP_NR_VCPUS", 9, uint32(CapNrVCPUs)},
	{"KVM_CAP_NR_MEMSLOTS", 10, uint32(CapNrMemSlots)},
	{"KVM_CAP_PIT", 11, uint32(CapPIT)},
	{"KVM_CAP_NOP_IO_DELAY", 12, uint32(CapNopIODelay)},
	{"KVM_CAP_MP_STATE", 14, uint32(CapMPState)},
	{"KVM_CAP_COALESCED_MMIO", 15, uint32(CapCoalescedMMIO)},
	{"KVM_CAP_SYNC_MMU", 16, uint32(CapSyncMMU)},
	{"KVM_CAP_USER_NMI", 22, uint32(CapUserNMI)},
	{"KVM_CAP_SET_GUEST_DEBUG", 23, uint32(CapSetGuestDebug)},
	{"KVM_CAP_REINJECT_CONTROL", 24, uint32(CapReinjectControl)},
	{"KVM_CAP_IRQ_ROUTING", 25, uint32(CapIRQRouting)},
	{"KVM_CAP_IRQ_INJECT_STATUS", 26, uint32(CapIRQInjectStatus)},
	{"KVM_CAP_MCE", 31, uint32(CapMCE)},
	{"KVM_CAP_IRQFD", 32, uint32(CapIRQFD)},
	{"KVM_CAP_PIT2", 33, uint32(CapPIT2)},
	{"KVM_CAP_SET_BOOT_CPU_ID", 34, uint32(CapSetBootCPUID)},
	{"KVM_CAP_PIT_STATE2", 35, uint32(CapPITState2)},
	{"KVM_CAP_IOEVENTFD", 36, uint32(CapIOEventFD)},
	{"KVM_CAP_SET_IDENTITY_MAP_ADDR", 37, uint32(CapSetIdentityMapAddr)},
	{"KVM_CAP_ADJUST_CLOCK", 39, uint32(CapAdjustClock)},
	{"KVM_CAP_INTERNAL_ERROR_DATA", 40, uint32(CapInternalErrorData)},
	{"KVM_CAP_VCPU_EVENTS", 41, uint32(CapVCPUEvents)},
	{"KVM_CAP_INTR_SHADOW", 49, uint32(CapIntrShadow)},
	{"KVM_CAP_DEBUGREGS", 50, uint32(CapDebugRegs)},
	{"KVM_CAP_ENABLE_CAP", 54, uint32(CapEnableCap)},
	{"KVM_CAP_XSAVE", 55, uint32(CapXSave)},
	{"KVM_CAP_XCRS", 56, uint32(CapXCRS)},
	{"KVM_CAP_ASYNC_PF", 59, uint32(CapAsyncPF)},
	{"KVM_CAP_TSC_CONTROL", 60, uint32(CapTSCControl)},
	{"KVM_CAP_GET_TSC_KHZ", 61, uint32(CapGetTSCKHz)},
	{"KVM_CAP_MAX_VCPUS", 66, uint32(CapMaxVCPUs)},
	{"KVM_CAP_ONE_REG", 70, uint32(CapOneReg)},
	{"KVM_CAP_TSC_DEADLINE_TIMER", 72, uint32(CapTSCDeadlineTimer)},
	{"KVM_CAP_SYNC_REGS", 74, uint32(CapSyncRegs)},
	{"KVM_CAP_KVMCLOCK_CTRL", 76, uint32(CapKVMClockCtrl)},
	{"KVM_CAP_SIGNAL_MSI", 77, uint32(CapSignalMSI)},
	{"KVM_CAP_READONLY_MEM", 81, uint32(CapReadonlyMem)},
	{"KVM_CAP_IRQFD_RESAMPLE", 82, uint32(CapIRQFDResample)},
	{"KVM_CAP_ENABLE_CAP_VM", 98, uint32(CapEnableCapVM)},
	{"KVM_CAP_IOEVENTFD_NO_LENGTH", 100, uint32(CapIOEventFDNoLength)},
	{"KVM_CAP_SPLIT_IRQCHIP", 121, uint32(CapSplitIRQChip)},
	{"KVM_CAP_IOEVENTFD_ANY_LENGTH", 122, uint32(CapIOEventFDAnyLength)},
	{"KVM_CAP_MAX_VCPU_ID", 128, uint32(CapMaxVCPUID)},
	{"KVM_CAP_X2APIC_API", 129, uint32(CapX2APICAPI)},
	{"KVM_CAP_IMMEDIATE_EXIT", 136, uint32(CapImmediateExit)},
	{"KVM_CAP_X86_DISABLE_EXITS", 143, uint32(CapX86DisableExits)},
	{"KVM_CAP_GET_MSR_FEATURES", 153, uint32(CapMSRFeatures)},
	{"KVM_CAP_EXCEPTION_PAYLOAD", 164, uint32(CapExceptionPayload)},
	{"KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", 168, uint32(CapManualDirtyLogProtect2)},
	{"KVM_CAP_X86_USER_SPACE_MSR", 188, uint32(CapX86UserSpaceMSR)},
	{"KVM_CAP_DIRTY_LOG_RING", 192, uint32(CapDirtyLogRing)},
	{"KVM_CAP_SET_GUEST_DEBUG2", 195, uint32(CapSetGuestDebug2)},
	{"KVM_CAP_XSAVE2", 208, uint32(CapXSave2)},
	{"KVM_CAP_SYS_ATTRIBUTES", 209, uint32(CapSysAttributes)},
	{"KVM_CAP_VM_TSC_CONTROL", 214, uint32(CapVMTSCControl)},
}

// wantExits holds KVM_EXIT_* values printed from <linux/kvm.h>.
var wantExits = []struct {
	c   string
	v   uint32
	got ExitReason
}{
	{"KVM_EXIT_UNKNOWN", 0, ExitUnknown},
	{"KVM_EXIT_EXCEPTION", 1, ExitException},
	{"KVM_EXIT_IO", 2, ExitIO},
	{"KVM_EXIT_HYPERCALL", 3, ExitHypercall},
	{"KVM_EXIT_DEBUG", 4, ExitDebug},
	{"KVM_EXIT_HLT", 5, ExitHLT},
	{"KVM_EXIT_MMIO", 6, ExitMMIO},
	{"KVM_EXIT_IRQ_WINDOW_OPEN", 7, ExitIRQWindowOpen},
	{"KVM_EXIT_SHUTDOWN", 8, ExitShutdown},
	{"KVM_EXIT_FAIL_ENTRY", 9, ExitFailEntry},
	{"KVM_EXIT_INTR", 10, ExitIntr},
	{"KVM_EXIT_SET_TPR", 11, ExitSetTPR},
	{"KVM_EXIT_TPR_ACCESS", 12, ExitTPRAccess},
	{"KVM_EXIT_S390_SIEIC", 13, ExitS390SIEIC},
	{"KVM_EXIT_S390_RESET", 14, ExitS390Reset},
	{"KVM_EXIT_DCR", 15, ExitDCR},
	{"KVM_EXIT_NMI", 16, ExitNMI},
	{"KVM_EXIT_INTERNAL_ERROR", 17, ExitInternalError},
	{"KVM_EXIT_OSI", 18, ExitOSI},
	{"KVM_EXIT_PAPR_HCALL", 19, ExitPAPRHcall},
	{"KVM_EXIT_S390_UCONTROL", 20, ExitS390UControl},
	{"KVM_EXIT_WATCHDOG", 21, ExitWatchdog},
	{"KVM_EXIT_S390_TSCH", 22, ExitS390TSCH},
	{"KVM_EXIT_EPR", 23, ExitEPR},
	{"KVM_EXIT_SYSTEM_EVENT", 24, ExitSystemEvent},
	{"KVM_EXIT_S390_STSI", 25, ExitS390STSI},
	{"KVM_EXIT_IOAPIC_EOI", 26, ExitIOAPICEOI},
	{"KVM_EXIT_HYPERV", 27, ExitHyperV},
	{"KVM_EXIT_ARM_NISV", 28, ExitARMNISV},
	{"KVM_EXIT_X86_RDMSR", 29, ExitX86RDMSR},
	{"KVM_EXIT_X86_WRMSR", 30, ExitX86WRMSR},
	{"KVM_EXIT_DIRTY_RING_FULL", 31, ExitDirtyRingFull},
	{"KVM_EXIT_AP_RESET_HOLD", 32, ExitAPResetHold},
	{"KVM_EXIT_X86_BUS_LOCK", 33, ExitX86BusLock},
	{"KVM_EXIT_XEN", 34, ExitXen},
	{"KVM_EXIT_RISCV_SBI", 35, ExitRISCVSBI},
	{"KVM_EXIT_RISCV_CSR", 36, ExitRISCVCSR},
	{"KVM_EXIT_NOTIFY", 37, ExitNotify},
}

func TestCapsAndExits(t *testing.T) {
	for _, w := range wantCaps {
		if w.got != w.v {
			t.Errorf("%s: Go value %d, C says %d", w.c, w.got, w.v)
		}
		if s := "KVM_CAP_" + Cap(w.got).String(); s != w.c {
			t.Errorf("Cap(%d).String() gives %s, want %s", w.got, s, w.c)
		}
	}
	for _, w := range wantExits {
		if uint32(w.got) != w.v {
			t.Errorf("%s: Go value %d, C says %d", w.c, w.got, w.v)
		}
		if s := "KVM_EXIT_" + w.got.String(); s != w.c {
			t.Errorf("ExitReason(%d).String() gives %s, want %s", w.got, s, w.c)
		}
	}
	if s := ExitReason(999).String(); !strings.Contains(s, "999") {
		t.Errorf("unknown exit reason string %q lacks the number", s)
	}
	if s := Cap(9999).String(); !strings.Contains(s, "9999") {
		t.Errorf("unknown cap string %q lacks the number", s)
	}
	for _, c := range []struct {
		r    ExitReason
		want string
	}{{ExitIO, "IO"}, {ExitMMIO, "MMIO"}, {ExitHLT, "HLT"}, {ExitIntr, "INTR"}, {ExitSystemEvent, "SYSTEM_EVENT"}, {ExitInternalError, "INTERNAL_ERROR"}} {
		if c.r.String() != c.want {
			t.Errorf("%d.String() = %q, want %q", uint32(c.r), c.r.String(), c.want)
		}
	}
}
