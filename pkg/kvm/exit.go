package kvm

import "fmt"

// ExitReason is kvm_run.exit_reason (KVM_EXIT_*).
type ExitReason uint32

// Exit reasons. Values are the kernel's ABI numbers.
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitSetTPR        ExitReason = 11
	ExitTPRAccess     ExitReason = 12
	ExitS390SIEIC     ExitReason = 13
	ExitS390Reset     ExitReason = 14
	ExitDCR           ExitReason = 15
	ExitNMI           ExitReason = 16
	ExitInternalError ExitReason = 17
	ExitOSI           ExitReason = 18
	ExitPAPRHcall     ExitReason = 19
	ExitS390UControl  ExitReason = 20
	ExitWatchdog      ExitReason = 21
	ExitS390TSCH      ExitReason = 22
	ExitEPR           ExitReason = 23
	ExitSystemEvent   ExitReason = 24
	ExitS390STSI      ExitReason = 25
	ExitIOAPICEOI     ExitReason = 26
	ExitHyperV        ExitReason = 27
	ExitARMNISV       ExitReason = 28
	ExitX86RDMSR      ExitReason = 29
	ExitX86WRMSR      ExitReason = 30
	ExitDirtyRingFull ExitReason = 31
	ExitAPResetHold   ExitReason = 32
	ExitX86BusLock    ExitReason = 33
	ExitXen           ExitReason = 34
	ExitRISCVSBI      ExitReason = 35
	ExitRISCVCSR      ExitReason = 36
	ExitNotify        ExitReason = 37
)

// String returns the KVM_EXIT_* name without the prefix ("IO", "MMIO",
// "HLT", ...), or "ExitReason(n)" for numbers this package does not know.
func (r ExitReason) String() string {
	names := [...]string{
		"UNKNOWN", "EXCEPTION", "IO", "HYPERCALL", "DEBUG", "HLT", "MMIO",
		"IRQ_WINDOW_OPEN", "SHUTDOWN", "FAIL_ENTRY", "INTR", "SET_TPR",
		"TPR_ACCESS", "S390_SIEIC", "S390_RESET", "DCR", "NMI",
		"INTERNAL_ERROR", "OSI", "PAPR_HCALL", "S390_UCONTROL", "WATCHDOG",
		"S390_TSCH", "EPR", "SYSTEM_EVENT", "S390_STSI", "IOAPIC_EOI",
		"HYPERV", "ARM_NISV", "X86_RDMSR", "X86_WRMSR", "DIRTY_RING_FULL",
		"AP_RESET_HOLD", "X86_BUS_LOCK", "XEN", "RISCV_SBI", "RISCV_CSR",
		"NOTIFY",
	}
	if int(r) < len(names) {
		return names[r]
	}
	return fmt.Sprintf("ExitReason(%d)", uint32(r))
}

// System event types (kvm_run.system_event.type).
const (
	SystemEventShutdown uint32 = 1
	SystemEventReset    uint32 = 2
	SystemEventCrash    uint32 = 3
	SystemEventWakeup   uint32 = 4
	SystemEventSuspend  uint32 = 5
	SystemEventSEVTerm  uint32 = 6
)

// Internal error suberrors (kvm_run.internal.suberror).
const (
	InternalErrorEmulation            uint32 = 1
	InternalErrorSimulEx              uint32 = 2
	InternalErrorDeliveryEv           uint32 = 3
	InternalErrorUnexpectedExitReason uint32 = 4
)

// IOExit is the payload of ExitIO.
type IOExit struct {
	// Out is true for OUT/OUTS (guest to device).
	Out bool
	// Size is the access width in bytes: 1, 2 or 4.
	Size uint8
	Port uint16
	// Count is more than 1 for string instructions (REP INS/OUTS).
	Count uint32
	// Data aliases the kvm_run mapping: Size*Count bytes, filled by the
	// guest for Out, to be filled by the caller for In before the next Run.
	// It is valid until the next Run or Close.
	Data []byte
}

// MMIOExit is the payload of ExitMMIO.
type MMIOExit struct {
	Addr  uint64
	Write bool
	// Data aliases kvm_run.mmio.data, 1 to 8 bytes: the value written, or
	// the place to put the value read before the next Run. It is valid
	// until the next Run or Close.
	Data []byte
}

// DebugExit is the payload of ExitDebug (struct kvm_debug_exit_arch).
type DebugExit struct {
	Exception uint32
	PC        uint64
	DR6       uint64
	DR7       uint64
}

// Offsets into struct kvm_run (x86-64); layout_test.go checks them against
// the C layout.
const (
	runRequestInterruptWindow = 0
	runImmediateExit          = 1
	runExitReason             = 8
	runReadyForInjection      = 12
	runIFFlag                 = 13
	runFlags                  = 14
	runCR8                    = 16
	runAPICBase               = 24
	runUnion                  = 32

	runIODirection  = runUnion + 0
	runIOSize       = runUnion + 1
	runIOPort       = runUnion + 2
	runIOCount      = runUnion + 4
	runIODataOffset = runUnion + 8

	runMMIOPhysAddr = runUnion + 0
	runMMIOData     = runUnion + 8
	runMMIOLen      = runUnion + 16
	runMMIOIsWrite  = runUnion + 20

	runHWExitReason = runUnion + 0

	runEventType  = runUnion + 0
	runEventNData = runUnion + 4
	runEventData  = runUnion + 8

	runInternalSuberror = runUnion + 0
	runInternalNData    = runUnion + 4
	runInternalData     = runUnion + 8

	runFailEntryReason = runUnion + 0
	runFailEntryCPU    = runUnion + 8

	runExException = runUnion + 0
	runExErrorCode = runUnion + 4

	runDebugException = runUnion + 0
	runDebugPC        = runUnion + 8
	runDebugDR6       = runUnion + 16
	runDebugDR7       = runUnion + 24

	runMSRError  = runUnion + 0
	runMSRReason = runUnion + 8
	runMSRIndex  = runUnion + 12
	runMSRData   = runUnion + 16

	// runMaxData is the length of the data arrays of internal and
	// system_event.
	runMaxData = 16
)

// KVM_IO direction values.
const ioDirOut = 1

// Run flags (kvm_run.flags).
const (
	// RunFlagSMM is KVM_RUN_X86_SMM: the vCPU is in system management mode.
	RunFlagSMM uint16 = 1 << 0
	// RunFlagBusLock is KVM_RUN_X86_BUS_LOCK.
	RunFlagBusLock uint16 = 1 << 1
)
