package kvm

import "fmt"

// Cap is a KVM capability number for KVM_CHECK_EXTENSION (KVM_CAP_* in
// linux/kvm.h).
type Cap uint32

// Capabilities vmmd asks about. Values are the kernel's ABI numbers.
const (
	CapIRQChip                Cap = 0
	CapHLT                    Cap = 1
	CapUserMemory             Cap = 3
	CapSetTSSAddr             Cap = 4
	CapExtCPUID               Cap = 7
	CapClockSource            Cap = 8
	CapNrVCPUs                Cap = 9
	CapNrMemSlots             Cap = 10
	CapPIT                    Cap = 11
	CapNopIODelay             Cap = 12
	CapMPState                Cap = 14
	CapCoalescedMMIO          Cap = 15
	CapSyncMMU                Cap = 16
	CapUserNMI                Cap = 22
	CapSetGuestDebug          Cap = 23
	CapReinjectControl        Cap = 24
	CapIRQRouting             Cap = 25
	CapIRQInjectStatus        Cap = 26
	CapMCE                    Cap = 31
	CapIRQFD                  Cap = 32
	CapPIT2                   Cap = 33
	CapSetBootCPUID           Cap = 34
	CapPITState2              Cap = 35
	CapIOEventFD              Cap = 36
	CapSetIdentityMapAddr     Cap = 37
	CapAdjustClock            Cap = 39
	CapInternalErrorData      Cap = 40
	CapVCPUEvents             Cap = 41
	CapIntrShadow             Cap = 49
	CapDebugRegs              Cap = 50
	CapEnableCap              Cap = 54
	CapXSave                  Cap = 55
	CapXCRS                   Cap = 56
	CapAsyncPF                Cap = 59
	CapTSCControl             Cap = 60
	CapGetTSCKHz              Cap = 61
	CapMaxVCPUs               Cap = 66
	CapOneReg                 Cap = 70
	CapTSCDeadlineTimer       Cap = 72
	CapSyncRegs               Cap = 74
	CapKVMClockCtrl           Cap = 76
	CapSignalMSI              Cap = 77
	CapReadonlyMem            Cap = 81
	CapIRQFDResample          Cap = 82
	CapEnableCapVM            Cap = 98
	CapIOEventFDNoLength      Cap = 100
	CapSplitIRQChip           Cap = 121
	CapIOEventFDAnyLength     Cap = 122
	CapMaxVCPUID              Cap = 128
	CapX2APICAPI              Cap = 129
	CapImmediateExit          Cap = 136
	CapX86DisableExits        Cap = 143
	CapMSRFeatures            Cap = 153
	CapExceptionPayload       Cap = 164
	CapManualDirtyLogProtect2 Cap = 168
	CapX86UserSpaceMSR        Cap = 188
	CapDirtyLogRing           Cap = 192
	CapSetGuestDebug2         Cap = 195
	CapXSave2                 Cap = 208
	CapSysAttributes          Cap = 209
	CapVMTSCControl           Cap = 214
)

// String returns the KVM_CAP_* name without the prefix, or the number.
func (c Cap) String() string {
	switch c {
	case CapIRQChip:
		return "IRQCHIP"
	case CapHLT:
		return "HLT"
	case CapUserMemory:
		return "USER_MEMORY"
	case CapSetTSSAddr:
		return "SET_TSS_ADDR"
	case CapExtCPUID:
		return "EXT_CPUID"
	case CapClockSource:
		return "CLOCKSOURCE"
	case CapNrVCPUs:
		return "NR_VCPUS"
	case CapNrMemSlots:
		return "NR_MEMSLOTS"
	case CapPIT:
		return "PIT"
	case CapNopIODelay:
		return "NOP_IO_DELAY"
	case CapMPState:
		return "MP_STATE"
	case CapCoalescedMMIO:
		return "COALESCED_MMIO"
	case CapSyncMMU:
		return "SYNC_MMU"
	case CapUserNMI:
		return "USER_NMI"
	case CapSetGuestDebug:
		return "SET_GUEST_DEBUG"
	case CapReinjectControl:
		return "REINJECT_CONTROL"
	case CapIRQRouting:
		return "IRQ_ROUTING"
	case CapIRQInjectStatus:
		return "IRQ_INJECT_STATUS"
	case CapMCE:
		return "MCE"
	case CapIRQFD:
		return "IRQFD"
	case CapPIT2:
		return "PIT2"
	case CapSetBootCPUID:
		return "SET_BOOT_CPU_ID"
	case CapPITState2:
		return "PIT_STATE2"
	case CapIOEventFD:
		return "IOEVENTFD"
	case CapSetIdentityMapAddr:
		return "SET_IDENTITY_MAP_ADDR"
	case CapAdjustClock:
		return "ADJUST_CLOCK"
	case CapInternalErrorData:
		return "INTERNAL_ERROR_DATA"
	case CapVCPUEvents:
		return "VCPU_EVENTS"
	case CapIntrShadow:
		return "INTR_SHADOW"
	case CapDebugRegs:
		return "DEBUGREGS"
	case CapEnableCap:
		return "ENABLE_CAP"
	case CapXSave:
		return "XSAVE"
	case CapXCRS:
		return "XCRS"
	case CapAsyncPF:
		return "ASYNC_PF"
	case CapTSCControl:
		return "TSC_CONTROL"
	case CapGetTSCKHz:
		return "GET_TSC_KHZ"
	case CapMaxVCPUs:
		return "MAX_VCPUS"
	case CapOneReg:
		return "ONE_REG"
	case CapTSCDeadlineTimer:
		return "TSC_DEADLINE_TIMER"
	case CapSyncRegs:
		return "SYNC_REGS"
	case CapKVMClockCtrl:
		return "KVMCLOCK_CTRL"
	case CapSignalMSI:
		return "SIGNAL_MSI"
	case CapReadonlyMem:
		return "READONLY_MEM"
	case CapIRQFDResample:
		return "IRQFD_RESAMPLE"
	case CapEnableCapVM:
		return "ENABLE_CAP_VM"
	case CapIOEventFDNoLength:
		return "IOEVENTFD_NO_LENGTH"
	case CapSplitIRQChip:
		return "SPLIT_IRQCHIP"
	case CapIOEventFDAnyLength:
		return "IOEVENTFD_ANY_LENGTH"
	case CapMaxVCPUID:
		return "MAX_VCPU_ID"
	case CapX2APICAPI:
		return "X2APIC_API"
	case CapImmediateExit:
		return "IMMEDIATE_EXIT"
	case CapX86DisableExits:
		return "X86_DISABLE_EXITS"
	case CapMSRFeatures:
		return "GET_MSR_FEATURES"
	case CapExceptionPayload:
		return "EXCEPTION_PAYLOAD"
	case CapManualDirtyLogProtect2:
		return "MANUAL_DIRTY_LOG_PROTECT2"
	case CapX86UserSpaceMSR:
		return "X86_USER_SPACE_MSR"
	case CapDirtyLogRing:
		return "DIRTY_LOG_RING"
	case CapSetGuestDebug2:
		return "SET_GUEST_DEBUG2"
	case CapXSave2:
		return "XSAVE2"
	case CapSysAttributes:
		return "SYS_ATTRIBUTES"
	case CapVMTSCControl:
		return "VM_TSC_CONTROL"
	}
	return fmt.Sprintf("Cap(%d)", uint32(c))
}
