package kvm

import "unsafe"

// layout reports the size and field offsets of every Go type that mirrors a
// kernel structure, keyed by the C names ("kvm_regs", "kvm_regs.rip"), so
// layout_test.go can compare them with numbers taken from the C headers.
// For structures the package marshals by hand (kvm_cpuid2, kvm_msrs,
// kvm_msr_list, kvm_run) it reports the constants the code uses instead.
func layout() map[string]uintptr {
	m := map[string]uintptr{}
	add := func(name string, size uintptr, fields ...any) {
		m[name] = size
		for i := 0; i+1 < len(fields); i += 2 {
			m[name+"."+fields[i].(string)] = fields[i+1].(uintptr)
		}
	}

	var umr UserMemoryRegion
	add("kvm_userspace_memory_region", unsafe.Sizeof(umr),
		"slot", unsafe.Offsetof(umr.Slot), "flags", unsafe.Offsetof(umr.Flags),
		"guest_phys_addr", unsafe.Offsetof(umr.GuestPhysAddr), "memory_size", unsafe.Offsetof(umr.MemorySize),
		"userspace_addr", unsafe.Offsetof(umr.UserspaceAddr))
	var il irqLevel
	add("kvm_irq_level", unsafe.Sizeof(il), "irq", unsafe.Offsetof(il.IRQ), "level", unsafe.Offsetof(il.Level))
	var ic IRQChip
	add("kvm_irqchip", unsafe.Sizeof(ic), "chip_id", unsafe.Offsetof(ic.ChipID), "pad", unsafe.Offsetof(ic.Pad), "chip", unsafe.Offsetof(ic.Chip))
	var pic PICState
	add("kvm_pic_state", unsafe.Sizeof(pic), "irr", unsafe.Offsetof(pic.IRR), "init4", unsafe.Offsetof(pic.Init4), "elcr_mask", unsafe.Offsetof(pic.ELCRMask))
	var io IOAPICState
	add("kvm_ioapic_state", unsafe.Sizeof(io), "base_address", unsafe.Offsetof(io.BaseAddress),
		"ioregsel", unsafe.Offsetof(io.IORegSel), "id", unsafe.Offsetof(io.ID), "irr", unsafe.Offsetof(io.IRR),
		"pad", unsafe.Offsetof(io.Pad), "redirtbl", unsafe.Offsetof(io.RedirTbl))
	var pc pitConfig
	add("kvm_pit_config", unsafe.Sizeof(pc), "flags", unsafe.Offsetof(pc.Flags), "pad", unsafe.Offsetof(pc.Pad))
	var ch PITChannelState
	add("kvm_pit_channel_state", unsafe.Sizeof(ch), "count", unsafe.Offsetof(ch.Count),
		"latched_count", unsafe.Offsetof(ch.LatchedCount), "count_latched", unsafe.Offsetof(ch.CountLatched),
		"status_latched", unsafe.Offsetof(ch.StatusLatched), "status", unsafe.Offsetof(ch.Status),
		"read_state", unsafe.Offsetof(ch.ReadState), "write_state", unsafe.Offsetof(ch.WriteState),
		"write_latch", unsafe.Offsetof(ch.WriteLatch), "rw_mode", unsafe.Offsetof(ch.RWMode),
		"mode", unsafe.Offsetof(ch.Mode), "bcd", unsafe.Offsetof(ch.BCD), "gate", unsafe.Offsetof(ch.Gate),
		"count_load_time", unsafe.Offsetof(ch.CountLoadTime))
	var ps PITState2
	add("kvm_pit_state2", unsafe.Sizeof(ps), "channels", unsafe.Offsetof(ps.Channels), "flags", unsafe.Offsetof(ps.Flags), "reserved", unsafe.Offsetof(ps.Reserved))
	var cd ClockData
	add("kvm_clock_data", unsafe.Sizeof(cd), "clock", unsafe.Offsetof(cd.Clock), "flags", unsafe.Offsetof(cd.Flags),
		"pad0", unsafe.Offsetof(cd.Pad0), "realtime", unsafe.Offsetof(cd.Realtime), "host_tsc", unsafe.Offsetof(cd.HostTSC),
		"pad", unsafe.Offsetof(cd.Pad))
	var dl dirtyLog
	add("kvm_dirty_log", unsafe.Sizeof(dl), "slot", unsafe.Offsetof(dl.Slot), "padding1", unsafe.Offsetof(dl.Padding1), "dirty_bitmap", unsafe.Offsetof(dl.Bitmap))
	var irf irqfd
	add("kvm_irqfd", unsafe.Sizeof(irf), "fd", unsafe.Offsetof(irf.FD), "gsi", unsafe.Offsetof(irf.GSI),
		"flags", unsafe.Offsetof(irf.Flags), "resamplefd", unsafe.Offsetof(irf.ResampleFD), "pad", unsafe.Offsetof(irf.Pad))
	var ioe ioeventfd
	add("kvm_ioeventfd", unsafe.Sizeof(ioe), "datamatch", unsafe.Offsetof(ioe.DataMatch), "addr", unsafe.Offsetof(ioe.Addr),
		"len", unsafe.Offsetof(ioe.Len), "fd", unsafe.Offsetof(ioe.FD), "flags", unsafe.Offsetof(ioe.Flags), "pad", unsafe.Offsetof(ioe.Pad))
	var msi MSI
	add("kvm_msi", unsafe.Sizeof(msi), "address_lo", unsafe.Offsetof(msi.AddressLo), "address_hi", unsafe.Offsetof(msi.AddressHi),
		"data", unsafe.Offsetof(msi.Data), "flags", unsafe.Offsetof(msi.Flags), "devid", unsafe.Offsetof(msi.DevID), "pad", unsafe.Offsetof(msi.Pad))
	var ec EnableCapArgs
	add("kvm_enable_cap", unsafe.Sizeof(ec), "cap", unsafe.Offsetof(ec.Cap), "flags", unsafe.Offsetof(ec.Flags),
		"args", unsafe.Offsetof(ec.Args), "pad", unsafe.Offsetof(ec.Pad))
	var ia kvmInterruptArg
	add("kvm_interrupt", unsafe.Sizeof(ia), "irq", unsafe.Offsetof(ia.IRQ))
	var tr Translation
	add("kvm_translation", unsafe.Sizeof(tr), "linear_address", unsafe.Offsetof(tr.LinearAddress),
		"physical_address", unsafe.Offsetof(tr.PhysicalAddress), "valid", unsafe.Offsetof(tr.Valid),
		"writeable", unsafe.Offsetof(tr.Writeable), "usermode", unsafe.Offsetof(tr.Usermode), "pad", unsafe.Offsetof(tr.Pad))
	var gd GuestDebug
	add("kvm_guest_debug", unsafe.Sizeof(gd), "control", unsafe.Offsetof(gd.Control), "pad", unsafe.Offsetof(gd.Pad), "arch.debugreg", unsafe.Offsetof(gd.DebugReg))
	var r Regs
	add("kvm_regs", unsafe.Sizeof(r), "rax", unsafe.Offsetof(r.RAX), "rbx", unsafe.Offsetof(r.RBX), "rcx", unsafe.Offsetof(r.RCX),
		"rdx", unsafe.Offsetof(r.RDX), "rsi", unsafe.Offsetof(r.RSI), "rdi", unsafe.Offsetof(r.RDI), "rsp", unsafe.Offsetof(r.RSP),
		"rbp", unsafe.Offsetof(r.RBP), "r8", unsafe.Offsetof(r.R8), "r15", unsafe.Offsetof(r.R15), "rip", unsafe.Offsetof(r.RIP),
		"rflags", unsafe.Offsetof(r.RFLAGS))
	var sg Segment
	add("kvm_segment", unsafe.Sizeof(sg), "base", unsafe.Offsetof(sg.Base), "limit", unsafe.Offsetof(sg.Limit),
		"selector", unsafe.Offsetof(sg.Selector), "type", unsafe.Offsetof(sg.Type), "present", unsafe.Offsetof(sg.Present),
		"dpl", unsafe.Offsetof(sg.DPL), "db", unsafe.Offsetof(sg.DB), "s", unsafe.Offsetof(sg.S), "l", unsafe.Offsetof(sg.L),
		"g", unsafe.Offsetof(sg.G), "avl", unsafe.Offsetof(sg.AVL), "unusable", unsafe.Offsetof(sg.Unusable),
		"padding", unsafe.Offsetof(sg.Padding))
	var dt DTable
	add("kvm_dtable", unsafe.Sizeof(dt), "base", unsafe.Offsetof(dt.Base), "limit", unsafe.Offsetof(dt.Limit), "padding", unsafe.Offsetof(dt.Padding))
	var s Sregs
	add("kvm_sregs", unsafe.Sizeof(s), "cs", unsafe.Offsetof(s.CS), "ds", unsafe.Offsetof(s.DS), "es", unsafe.Offsetof(s.ES),
		"fs", unsafe.Offsetof(s.FS), "gs", unsafe.Offsetof(s.GS), "ss", unsafe.Offsetof(s.SS), "tr", unsafe.Offsetof(s.TR),
		"ldt", unsafe.Offsetof(s.LDT), "gdt", unsafe.Offsetof(s.GDT), "idt", unsafe.Offsetof(s.IDT),
		"cr0", unsafe.Offsetof(s.CR0), "cr2", unsafe.Offsetof(s.CR2), "cr3", unsafe.Offsetof(s.CR3), "cr4", unsafe.Offsetof(s.CR4),
		"cr8", unsafe.Offsetof(s.CR8), "efer", unsafe.Offsetof(s.EFER), "apic_base", unsafe.Offsetof(s.APICBase),
		"interrupt_bitmap", unsafe.Offsetof(s.InterruptBitmap))
	var f FPU
	add("kvm_fpu", unsafe.Sizeof(f), "fpr", unsafe.Offsetof(f.FPR), "fcw", unsafe.Offsetof(f.FCW), "fsw", unsafe.Offsetof(f.FSW),
		"ftwx", unsafe.Offsetof(f.FTWX), "pad1", unsafe.Offsetof(f.Pad1), "last_opcode", unsafe.Offsetof(f.LastOpcode),
		"last_ip", unsafe.Offsetof(f.LastIP), "last_dp", unsafe.Offsetof(f.LastDP), "xmm", unsafe.Offsetof(f.XMM),
		"mxcsr", unsafe.Offsetof(f.MXCSR), "pad2", unsafe.Offsetof(f.Pad2))
	var me MSREntry
	add("kvm_msr_entry", unsafe.Sizeof(me), "index", unsafe.Offsetof(me.Index), "reserved", unsafe.Offsetof(me.Reserved), "data", unsafe.Offsetof(me.Data))
	add("kvm_msrs", sizeofMSRs, "nmsrs", uintptr(0), "pad", uintptr(4), "entries", uintptr(sizeofMSRs))
	add("kvm_msr_list", sizeofMSRList, "nmsrs", uintptr(0), "indices", uintptr(sizeofMSRList))
	var ce CPUIDEntry
	add("kvm_cpuid_entry2", unsafe.Sizeof(ce), "function", unsafe.Offsetof(ce.Function), "index", unsafe.Offsetof(ce.Index),
		"flags", unsafe.Offsetof(ce.Flags), "eax", unsafe.Offsetof(ce.EAX), "ebx", unsafe.Offsetof(ce.EBX),
		"ecx", unsafe.Offsetof(ce.ECX), "edx", unsafe.Offsetof(ce.EDX), "padding", unsafe.Offsetof(ce.Padding))
	add("kvm_cpuid2", sizeofCPUID2, "nent", uintptr(0), "padding", uintptr(4), "entries", uintptr(sizeofCPUID2))
	var la LAPICState
	add("kvm_lapic_state", unsafe.Sizeof(la), "regs", unsafe.Offsetof(la.Regs))
	var mp MPState
	add("kvm_mp_state", unsafe.Sizeof(mp), "mp_state", uintptr(0))
	var ev VCPUEvents
	add("kvm_vcpu_events", unsafe.Sizeof(ev),
		"exception.injected", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.Injected),
		"exception.nr", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.Nr),
		"exception.has_error_code", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.HasErrorCode),
		"exception.pending", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.Pending),
		"exception.error_code", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.ErrorCode),
		"interrupt.injected", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Injected),
		"interrupt.nr", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Nr),
		"interrupt.soft", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Soft),
		"interrupt.shadow", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Shadow),
		"nmi.injected", unsafe.Offsetof(ev.NMI)+unsafe.Offsetof(ev.NMI.Injected),
		"nmi.pending", unsafe.Offsetof(ev.NMI)+unsafe.Offsetof(ev.NMI.Pending),
		"nmi.masked", unsafe.Offsetof(ev.NMI)+unsafe.Offsetof(ev.NMI.Masked),
		"nmi.pad", unsafe.Offsetof(ev.NMI)+unsafe.Offsetof(ev.NMI.Pad),
		"sipi_vector", unsafe.Offsetof(ev.SIPIVector), "flags", unsafe.Offsetof(ev.Flags),
		"smi.smm", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.SMM),
		"smi.pending", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.Pending),
		"smi.smm_inside_nmi", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.SMMInsideNMI),
		"smi.latched_init", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.LatchedInit),
		"triple_fault.pending", unsafe.Offsetof(ev.TripleFaultPending),
		"reserved", unsafe.Offsetof(ev.Reserved),
		"exception_has_payload", unsafe.Offsetof(ev.ExceptionHasPayload),
		"exception_payload", unsafe.Offsetof(ev.ExceptionPayload))
	var dr DebugRegs
	add("kvm_debugregs", unsafe.Sizeof(dr), "db", unsafe.Offsetof(dr.DB), "dr6", unsafe.Offsetof(dr.DR6), "dr7", unsafe.Offsetof(dr.DR7),
		"flags", unsafe.Offsetof(dr.Flags), "reserved", unsafe.Offsetof(dr.Reserved))
	var xs XSave
	add("kvm_xsave", unsafe.Sizeof(xs), "region", unsafe.Offsetof(xs.Region))
	var xc XCR
	add("kvm_xcr", unsafe.Sizeof(xc), "xcr", unsafe.Offsetof(xc.XCR), "reserved", unsafe.Offsetof(xc.Reserved), "value", unsafe.Offsetof(xc.Value))
	var xcs XCRs
	add("kvm_xcrs", unsafe.Sizeof(xcs), "nr_xcrs", unsafe.Offsetof(xcs.NrXCRs), "flags", unsafe.Offsetof(xcs.Flags),
		"xcrs", unsafe.Offsetof(xcs.XCRs), "padding", unsafe.Offsetof(xcs.Padding))

	u := func(v int) uintptr { return uintptr(v) }
	add("kvm_run", sizeofKVMRun,
		"request_interrupt_window", u(runRequestInterruptWindow), "immediate_exit", u(runImmediateExit),
		"exit_reason", u(runExitReason), "ready_for_interrupt_injection", u(runReadyForInjection),
		"if_flag", u(runIFFlag), "flags", u(runFlags), "cr8", u(runCR8), "apic_base", u(runAPICBase),
		"hw.hardware_exit_reason", u(runHWExitReason),
		"fail_entry.hardware_entry_failure_reason", u(runFailEntryReason), "fail_entry.cpu", u(runFailEntryCPU),
		"ex.exception", u(runExException), "ex.error_code", u(runExErrorCode),
		"io.direction", u(runIODirection), "io.size", u(runIOSize), "io.port", u(runIOPort),
		"io.count", u(runIOCount), "io.data_offset", u(runIODataOffset),
		"debug.arch.exception", u(runDebugException), "debug.arch.pc", u(runDebugPC),
		"debug.arch.dr6", u(runDebugDR6), "debug.arch.dr7", u(runDebugDR7),
		"mmio.phys_addr", u(runMMIOPhysAddr), "mmio.data", u(runMMIOData), "mmio.len", u(runMMIOLen),
		"mmio.is_write", u(runMMIOIsWrite),
		"internal.suberror", u(runInternalSuberror), "internal.ndata", u(runInternalNData), "internal.data", u(runInternalData),
		"system_event.type", u(runEventType), "system_event.ndata", u(runEventNData), "system_event.data", u(runEventData),
		"msr.error", u(runMSRError), "msr.reason", u(runMSRReason), "msr.index", u(runMSRIndex), "msr.data", u(runMSRData))
	return m
}
