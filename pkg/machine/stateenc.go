package machine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/vmmd/vmmd/pkg/devices/serial"
	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/devices/virtio/blk"
	"github.com/vmmd/vmmd/pkg/kvm"
)

// The device state travels in the guest's downtime: the source encodes it
// after the vCPUs stop and the destination decodes it before they start
// again. JSON cost ~0.5 ms each way for one vCPU (the KVM structures are
// mostly byte arrays, which JSON writes as lists of numbers), a large share
// of a ~4 ms switchover, and encoding/binary's reflection cost ~0.2 ms on
// its first use in a process. The KVM structures therefore go as their
// kernel memory images (kvm.ImageBytes), little-endian like every host
// that runs them; only the small, nested parts (run state, configuration,
// serial port, disks) stay JSON inside the binary form.

// stateMagic opens a binary State.
const stateMagic = "vmST"

// stateHead is the JSON part of the binary form.
type stateHead struct {
	RunState RunState        `json:"run-state"`
	Config   MigrationConfig `json:"config"`
	Serial   serial.State    `json:"serial"`
	Disks    []blk.State     `json:"disks"`
}

// Bounds the decoder enforces before allocating: a stream is input from
// another host.
const (
	maxStateVCPUs   = 1024
	maxStateHead    = 1 << 20
	maxStateBlob    = 64 << 10
	msrWireSize     = 12 // index uint32 + data uint64
	cpuidWireSize   = 40 // struct kvm_cpuid_entry2
	minVCPUWireSize = 1024
)

// MarshalBinary encodes s in vmmd's binary migration form. It does not
// validate s; UnmarshalBinary's caller does (LoadState calls Validate).
func (s *State) MarshalBinary() ([]byte, error) {
	head, err := json.Marshal(stateHead{RunState: s.RunState, Config: s.Config, Serial: s.Serial, Disks: s.Disks})
	if err != nil {
		return nil, fmt.Errorf("encode VM state: %w", err)
	}
	b := make([]byte, 0, 8+len(head)+len(s.VCPUs)*(8<<10)+3*irqchipLen+256)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(s.Version))
	b = appendBlob(b, head)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.VCPUs)))
	for i := range s.VCPUs {
		b = appendVCPU(b, &s.VCPUs[i])
	}
	b = appendBlob(b, s.PICMaster)
	b = appendBlob(b, s.PICSlave)
	b = appendBlob(b, s.IOAPIC)
	b = append(b, kvm.ImageBytes(&s.PIT)...)
	b = append(b, kvm.ImageBytes(&s.Clock)...)
	return b, nil
}

func appendVCPU(b []byte, v *VCPUState) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(v.ID))
	b = append(b, kvm.ImageBytes(&v.Regs)...)
	b = append(b, kvm.ImageBytes(&v.Sregs)...)
	b = append(b, kvm.ImageBytes(&v.FPU)...)
	b = appendBlob(b, v.XSave)
	if v.XCRs == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = append(b, kvm.ImageBytes(v.XCRs)...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v.MSRs)))
	for _, m := range v.MSRs {
		b = binary.LittleEndian.AppendUint32(b, m.Index)
		b = binary.LittleEndian.AppendUint64(b, m.Data)
	}
	b = binary.LittleEndian.AppendUint32(b, v.TSCKHz)
	b = appendBlob(b, v.LAPIC)
	b = binary.LittleEndian.AppendUint32(b, uint32(v.MPState))
	b = append(b, kvm.ImageBytes(&v.Events)...)
	b = append(b, kvm.ImageBytes(&v.Debug)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v.CPUID)))
	return append(b, kvm.ImagesBytes(v.CPUID)...)
}

func appendBlob(b, blob []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(blob)))
	return append(b, blob...)
}

// UnmarshalBinary decodes what MarshalBinary wrote. Every length and count
// is checked against its bound and against the bytes left before anything
// is allocated, so hostile input costs no more memory than its own size;
// errors wrap ErrBadState and name the part that is wrong. It does not
// validate the decoded values: call Validate.
func (s *State) UnmarshalBinary(data []byte) error {
	d := stateDecoder{b: data}
	if string(d.bytes(len(stateMagic), "magic")) != stateMagic {
		return badState("not a vmmd binary VM state (bad magic)")
	}
	var out State
	out.Version = int(d.u32("version"))
	if d.err == nil && out.Version != StateVersion {
		return badState("version %d, this vmmd reads version %d", out.Version, StateVersion)
	}
	var head stateHead
	if h := d.blob(maxStateHead, "head"); d.err == nil {
		if err := json.Unmarshal(h, &head); err != nil {
			return badState("head: %v", err)
		}
	}
	out.RunState, out.Config, out.Serial, out.Disks = head.RunState, head.Config, head.Serial, head.Disks
	n := d.count(maxStateVCPUs, minVCPUWireSize, "vCPU count")
	// A vCPU is at least minVCPUWireSize bytes: a count the data cannot
	// hold is refused before the slice is made.
	if d.err == nil {
		out.VCPUs = make([]VCPUState, n)
	}
	for i := range out.VCPUs {
		d.vcpu(&out.VCPUs[i], i)
	}
	out.PICMaster = d.blob(maxStateBlob, "PIC master")
	out.PICSlave = d.blob(maxStateBlob, "PIC slave")
	out.IOAPIC = d.blob(maxStateBlob, "IOAPIC")
	d.fixed(kvm.ImageBytes(&out.PIT), "PIT")
	d.fixed(kvm.ImageBytes(&out.Clock), "kvmclock")
	if d.err == nil && len(d.b) != 0 {
		d.err = badState("%d bytes after the end of the state", len(d.b))
	}
	if d.err != nil {
		return d.err
	}
	*s = out
	return nil
}

// stateDecoder reads the binary form; the first error sticks and every
// later read returns zero values.
type stateDecoder struct {
	b   []byte
	err error
	// at names the vCPU being read ("" outside one), for errors only.
	at string
}

func (d *stateDecoder) fail(what string, format string, args ...any) {
	if d.err == nil {
		if d.at != "" {
			what = d.at + " " + what
		}
		d.err = badState("%s: %s", what, fmt.Sprintf(format, args...))
	}
}

func (d *stateDecoder) bytes(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail(what, "truncated: %d bytes needed, %d left", n, len(d.b))
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *stateDecoder) u32(what string) uint32 {
	p := d.bytes(4, what)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

func (d *stateDecoder) u64(what string) uint64 {
	p := d.bytes(8, what)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

// count reads a count of items of at least size bytes each.
func (d *stateDecoder) count(limit, size int, what string) int {
	n := d.u32(what)
	switch {
	case d.err != nil:
		return 0
	case n > uint32(limit):
		d.fail(what, "%d, at most %d", n, limit)
		return 0
	case int(n)*size > len(d.b):
		d.fail(what, "%d items need %d bytes, %d left", n, int(n)*size, len(d.b))
		return 0
	}
	return int(n)
}

// blob reads a length-prefixed byte string into its own copy (the stream
// reuses its buffers).
func (d *stateDecoder) blob(limit int, what string) []byte {
	n := d.count(limit, 1, what+" length")
	p := d.bytes(n, what)
	if p == nil || n == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// fixed reads the memory image of a KVM structure (dst is its bytes).
func (d *stateDecoder) fixed(dst []byte, what string) {
	if p := d.bytes(len(dst), what); p != nil {
		copy(dst, p)
	}
}

func (d *stateDecoder) vcpu(v *VCPUState, i int) {
	d.at = fmt.Sprintf("vCPU %d", i)
	defer func() { d.at = "" }()
	v.ID = int(d.u32("id"))
	d.fixed(kvm.ImageBytes(&v.Regs), "regs")
	d.fixed(kvm.ImageBytes(&v.Sregs), "sregs")
	d.fixed(kvm.ImageBytes(&v.FPU), "FPU")
	v.XSave = d.blob(maxStateBlob, "XSAVE")
	switch has := d.bytes(1, "XCR flag"); {
	case has == nil:
	case has[0] == 1:
		v.XCRs = new(kvm.XCRs)
		d.fixed(kvm.ImageBytes(v.XCRs), "XCRs")
	case has[0] != 0:
		d.fail("XCR flag", "%d (0 or 1)", has[0])
	}
	if n := d.count(maxStateMSRs, msrWireSize, "MSR count"); n > 0 {
		v.MSRs = make([]MSR, n)
		for k := range v.MSRs {
			v.MSRs[k].Index = d.u32("MSR index")
			v.MSRs[k].Data = d.u64("MSR value")
		}
	}
	v.TSCKHz = d.u32("TSC kHz")
	v.LAPIC = d.blob(maxStateBlob, "LAPIC")
	v.MPState = kvm.MPState(d.u32("MP state"))
	d.fixed(kvm.ImageBytes(&v.Events), "events")
	d.fixed(kvm.ImageBytes(&v.Debug), "debug registers")
	if n := d.count(maxStateCPUID, cpuidWireSize, "CPUID count"); n > 0 {
		v.CPUID = make([]kvm.CPUIDEntry, n)
		d.fixed(kvm.ImagesBytes(v.CPUID), "CPUID")
	}
}

// WarmStateCodec runs the state's encoder and decoder once on a small
// sample. The JSON head's first use in a process builds encoding/json's
// per-type caches (~0.2 ms); a migration calls this while it sets up, so
// that cost is not paid again in the downtime.
func WarmStateCodec() {
	s := State{Version: StateVersion, RunState: StateRunning, VCPUs: []VCPUState{{XCRs: new(kvm.XCRs)}},
		Config: MigrationConfig{Drives: []MigrationDrive{{}}},
		Disks:  []blk.State{{Transport: virtio.State{Queues: []virtio.QueueState{{}}}, Pending: []uint16{0}}}}
	s.Serial.RxFIFO = []byte{0}
	if b, err := s.MarshalBinary(); err == nil {
		_ = new(State).UnmarshalBinary(b)
	}
}
