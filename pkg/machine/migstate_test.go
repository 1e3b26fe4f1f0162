package machine

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/devices/virtio/blk"
	"github.com/vmmd/vmmd/pkg/kvm"
	"github.com/vmmd/vmmd/pkg/memory"
)

func TestMigrationConfigCheck(t *testing.T) {
	base := MigrationConfig{Memory: 256 << 20, CPUs: 2, Drives: []MigrationDrive{
		{ID: "disk0", Size: 1 << 30}, {ID: "data", Size: 4 << 20, ReadOnly: true}}}
	clone := func() MigrationConfig {
		c := base
		c.Drives = append([]MigrationDrive(nil), base.Drives...)
		return c
	}
	if err := base.Check(clone()); err != nil {
		t.Fatalf("identical configs: %v", err)
	}
	tests := []struct {
		name   string
		source func(c *MigrationConfig)
		dest   func(c *MigrationConfig)
		want   []string
	}{
		{"memory", func(c *MigrationConfig) { c.Memory = 512 << 20 }, nil,
			[]string{"memory: source has 512 MiB, this VM has 256 MiB"}},
		{"cpus", func(c *MigrationConfig) { c.CPUs = 1 }, nil, []string{"cpus: source has 1, this VM has 2"}},
		{"acpi", func(c *MigrationConfig) { c.NoACPI = true }, nil, []string{"acpi: source has off, this VM has on"}},
		{"drive id", func(c *MigrationConfig) { c.Drives[1].ID = "disk1" }, nil,
			[]string{`drive 1: source has id "disk1", this VM has "data"`}},
		{"drive size", func(c *MigrationConfig) { c.Drives[0].Size = 2 << 30 }, nil,
			[]string{"drive 0 (disk0): source has 2147483648 bytes, this VM has 1073741824 bytes"}},
		{"drive read-only", func(c *MigrationConfig) { c.Drives[1].ReadOnly = false }, nil,
			[]string{"drive 1 (data): source is read-write, this VM is read-only"}},
		{"drive count", func(c *MigrationConfig) { c.Drives = c.Drives[:1] }, nil,
			[]string{"drives: source has 1, this VM has 2"}},
		{"all at once", func(c *MigrationConfig) { c.Memory, c.CPUs, c.Drives[0].ID = 128<<20, 4, "x" }, nil,
			[]string{"memory: source has 128 MiB", "cpus: source has 4, this VM has 2", `drive 0: source has id "x"`}},
	}
	for _, tc := range tests {
		src, dst := clone(), clone()
		tc.source(&src)
		if tc.dest != nil {
			tc.dest(&dst)
		}
		err := dst.Check(src)
		if err == nil {
			t.Errorf("%s: Check = nil, want an error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Check = %q, want it to contain %q", tc.name, err, w)
			}
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
			t.Errorf("%s: %d differences reported, want %d: %q", tc.name, n, len(tc.want), err)
		}
	}
	// Size 0 is unknown on either side (an inactive destination drive).
	src, dst := clone(), clone()
	dst.Drives[0].Size = 0
	if err := dst.Check(src); err != nil {
		t.Errorf("unknown destination size: %v", err)
	}
}

func TestMigrationConfigJSONNames(t *testing.T) {
	b, err := json.Marshal(MigrationConfig{Memory: 1, CPUs: 2, NoACPI: true, Drives: []MigrationDrive{{ID: "d", Size: 3, ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"memory":1,"cpus":2,"no-acpi":true,"drives":[{"id":"d","size":3,"read-only":true}]}`
	if string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
}

// sampleState is a valid State with every field non-trivial.
func sampleState() *State {
	v := func(id int) VCPUState {
		s := VCPUState{ID: id, LAPIC: make([]byte, lapicSize), XSave: make([]byte, xsaveSize),
			XCRs:   &kvm.XCRs{NrXCRs: 1, XCRs: [kvm.MaxXCRs]kvm.XCR{{XCR: 0, Value: 3}}},
			MSRs:   []MSR{{Index: 0x10, Data: 123456789}, {Index: 0x4b564d01, Data: 0x1234001}},
			TSCKHz: 2_445_000, MPState: kvm.MPStateHalted,
			CPUID: []kvm.CPUIDEntry{{Function: 1, EAX: 0x800f12, ECX: 1 << 31}}}
		s.Regs.RIP, s.Regs.RAX = 0x100200, uint64(id)
		s.Sregs.CR0, s.Sregs.EFER, s.Sregs.APICBase = 0x80050033, 0xd01, 0xfee00900
		s.Sregs.CS = kvm.Segment{Selector: 0x33, Type: 0xb, Present: 1, DPL: 3, S: 1, L: 1}
		s.FPU.FCW, s.FPU.XMM[3][5] = 0x37f, 9
		s.LAPIC[0x20], s.XSave[24] = byte(id), 0x80
		s.Events.Interrupt.Injected, s.Events.Interrupt.Nr = 1, 0x40
		s.Events.Flags = kvm.VCPUEventValidNMIPending | kvm.VCPUEventValidShadow
		s.Debug.DR7 = 0x400
		return s
	}
	s := &State{Version: StateVersion, RunState: StateRunning,
		Config:    MigrationConfig{Memory: 256 << 20, CPUs: 2, Drives: []MigrationDrive{{ID: "disk0", Size: 16 << 20}}},
		VCPUs:     []VCPUState{v(0), v(1)},
		PICMaster: make([]byte, irqchipLen), PICSlave: make([]byte, irqchipLen), IOAPIC: make([]byte, irqchipLen),
		Disks: []blk.State{{Transport: virtio.State{Status: 15, DriverFeatures: virtio.FeatureVersion1,
			Queues: []virtio.QueueState{{Size: 64, Ready: true, DescAddr: 0x119000, DriverAddr: 0x119400,
				DeviceAddr: 0x119600, LastAvail: 5, UsedIdx: 5}}}}},
	}
	s.IOAPIC[0x10] = 0x42
	s.PIT.Channels[0].Count, s.PIT.Channels[0].Mode = 11932, 2
	s.Clock.Clock = 987654321
	s.Serial.IER, s.Serial.RxFIFO, s.Serial.LSR = 1, []byte("hi"), 0x61
	return s
}

func TestStateJSONRoundTrip(t *testing.T) {
	s := sampleState()
	if err := s.Validate(); err != nil {
		t.Fatalf("sample state invalid: %v", err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got State
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, s) {
		t.Errorf("round trip changed the state:\n got %+v\nwant %+v", got, *s)
	}
	for _, key := range []string{`"version":2`, `"run-state":"running"`, `"vcpus":`, `"lapic":"`, `"ioapic":"`, `"disks":`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestValidateRejectsHostileStates(t *testing.T) {
	tests := []struct {
		name, want string
		mutate     func(s *State)
	}{
		{"nil vCPUs", "0 vCPU states", func(s *State) { s.VCPUs = nil }},
		{"wrong vCPU count", "1 vCPU states for a config of 2", func(s *State) { s.VCPUs = s.VCPUs[:1] }},
		{"zero CPUs", "config has 0 vCPUs", func(s *State) { s.Config.CPUs = 0 }},
		{"huge CPUs", "config has 100000 vCPUs", func(s *State) { s.Config.CPUs = 100000 }},
		{"vCPU id", "vCPU state 1 has id 7", func(s *State) { s.VCPUs[1].ID = 7 }},
		{"version", "version 0", func(s *State) { s.Version = 0 }},
		{"run state", `unknown run state ""`, func(s *State) { s.RunState = "" }},
		{"truncated LAPIC", "LAPIC state is 1023 bytes, want 1024", func(s *State) { s.VCPUs[1].LAPIC = s.VCPUs[1].LAPIC[:1023] }},
		{"missing LAPIC", "LAPIC state is 0 bytes", func(s *State) { s.VCPUs[0].LAPIC = nil }},
		{"short XSAVE", "XSAVE state is 12 bytes", func(s *State) { s.VCPUs[0].XSave = make([]byte, 12) }},
		{"XCR count", "17 XCRs, at most 16", func(s *State) { s.VCPUs[0].XCRs.NrXCRs = 17 }},
		{"absurd MSR count", "5000 MSRs, at most", func(s *State) { s.VCPUs[0].MSRs = make([]MSR, 5000) }},
		{"duplicate MSR", "MSR 0x10 listed twice", func(s *State) { s.VCPUs[0].MSRs = append(s.VCPUs[0].MSRs, MSR{Index: 0x10}) }},
		{"CPUID count", "300 CPUID entries", func(s *State) { s.VCPUs[0].CPUID = make([]kvm.CPUIDEntry, 300) }},
		{"MP state", "unknown MP state 77", func(s *State) { s.VCPUs[0].MPState = 77 }},
		{"two pending interrupts", "2 pending interrupts", func(s *State) { s.VCPUs[0].Sregs.InterruptBitmap = [4]uint64{1, 1} }},
		{"event flags", "events flags 0x100", func(s *State) { s.VCPUs[0].Events.Flags = 0x100 }},
		{"exception vector", "exception vector 40", func(s *State) { s.VCPUs[0].Events.Exception.Nr = 40 }},
		{"event bool", "must be 0 or 1", func(s *State) { s.VCPUs[0].Events.NMI.Pending = 9 }},
		{"SMM", "system management mode", func(s *State) { s.VCPUs[0].Events.SMI.SMM = 1 }},
		{"debug regs", "upper halves must be 0", func(s *State) { s.VCPUs[0].Debug.DR7 = 1 << 40 }},
		{"PIC", "PIC master state is 0 bytes, want 512", func(s *State) { s.PICMaster = nil }},
		{"IOAPIC", "IOAPIC state is 513 bytes", func(s *State) { s.IOAPIC = make([]byte, 513) }},
		{"disk count", "0 disk states for a config of 1 drives", func(s *State) { s.Disks = nil }},
		{"serial FIFO", "bytes in the receive FIFO", func(s *State) { s.Serial.RxFIFO = make([]byte, 5000) }},
	}
	for _, tc := range tests {
		s := sampleState()
		tc.mutate(s)
		err := s.Validate()
		if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want ErrBadState mentioning %q", tc.name, err, tc.want)
		}
	}
	var nilState *State
	if err := nilState.Validate(); !errors.Is(err, ErrBadState) {
		t.Errorf("nil state: Validate = %v", err)
	}
}

// nullBackend is an empty read-write disk for device-level tests.
type nullBackend struct{}

func (nullBackend) ReadAt(_ context.Context, p []byte, _ int64) (int, error)  { return len(p), nil }
func (nullBackend) WriteAt(_ context.Context, p []byte, _ int64) (int, error) { return len(p), nil }
func (nullBackend) Flush(context.Context) error                               { return nil }
func (nullBackend) Size() uint64                                              { return 16 << 20 }
func (nullBackend) ReadOnly() bool                                            { return false }
func (nullBackend) ID() string                                                { return "disk0" }

func testDevice(t testing.TB) (*memory.Memory, *blk.Device) {
	t.Helper()
	mem, err := memory.New(memory.MinSize)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := blk.New(blk.Config{Backend: nullBackend{}, Memory: mem, Base: virtioBase})
	if err != nil {
		mem.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dev.Close()
		mem.Close()
	})
	return mem, dev
}

func TestCheckDiskState(t *testing.T) {
	mem, dev := testDevice(t)
	good := sampleState().Disks[0]
	good.Transport.DriverFeatures &= dev.Transport().OfferedFeatures()
	if err := checkDiskState(mem, dev.Transport(), good); err != nil {
		t.Fatalf("good disk state: %v", err)
	}
	tests := []struct {
		name, want string
		mutate     func(s *blk.State)
	}{
		{"status bits", "status 0x10f has unknown bits", func(s *blk.State) { s.Transport.Status = 0x10f }},
		{"features", "not a subset", func(s *blk.State) { s.Transport.DriverFeatures = 1 << 60 }},
		{"interrupt status", "interrupt status 0x8", func(s *blk.State) { s.Transport.InterruptStatus = 8 }},
		{"queue count", "2 queues saved, the device has 1", func(s *blk.State) {
			s.Transport.Queues = append(s.Transport.Queues, s.Transport.Queues[0])
		}},
		{"queue size", "size 48", func(s *blk.State) { s.Transport.Queues[0].Size = 48 }},
		{"queue size 0", "size 0", func(s *blk.State) { s.Transport.Queues[0].Size = 0 }},
		{"huge queue", "size 32768", func(s *blk.State) { s.Transport.Queues[0].Size = 32768 }},
		{"ring outside RAM", "descriptor table at 0xfffffffffffff000", func(s *blk.State) {
			s.Transport.Queues[0].DescAddr = 0xfffffffffffff000
		}},
		{"used ring in the hole", "used ring at 0xd0000000", func(s *blk.State) { s.Transport.Queues[0].DeviceAddr = 0xd0000000 }},
		{"pending out of range", "pending request 64", func(s *blk.State) { s.Pending = []uint16{64} }},
		{"pending twice", "pending request 3", func(s *blk.State) { s.Pending = []uint16{3, 3} }},
		{"too many pending", "65 pending requests", func(s *blk.State) { s.Pending = make([]uint16, 65) }},
		{"pending, queue not ready", "queue 0 is not ready", func(s *blk.State) {
			s.Transport.Queues[0].Ready = false
			s.Pending = []uint16{1}
		}},
	}
	for _, tc := range tests {
		s := sampleState().Disks[0]
		s.Transport.DriverFeatures &= dev.Transport().OfferedFeatures()
		s.Transport.Queues = append([]virtio.QueueState(nil), s.Transport.Queues...)
		tc.mutate(&s)
		err := checkDiskState(mem, dev.Transport(), s)
		if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: checkDiskState = %v, want ErrBadState mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestCheckCPUID(t *testing.T) {
	src := []kvm.CPUIDEntry{{Function: 0, EAX: 0xd}, {Function: 7, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex, EBX: 1},
		{Function: cpuidTiming, EAX: 2_445_000, EBX: lapicBusKHz}}
	same := append([]kvm.CPUIDEntry(nil), src...)
	same[2].EAX = 2_445_100 // the TSC frequency is the TSC check's business
	if err := checkCPUID(0, src, same); err != nil {
		t.Errorf("equal CPUID: %v", err)
	}
	diff := append([]kvm.CPUIDEntry(nil), src[:2]...)
	diff[1].EBX = 0
	err := checkCPUID(1, src, diff)
	for _, w := range []string{"vCPU 1: CPUID leaf 0x7.0: source has 00000000 00000001", "CPUID leaf 0x40000010.0: the source has it"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("checkCPUID = %v, want it to mention %q", err, w)
		}
	}
	if !tscClose(2_445_000, 2_445_500) || tscClose(2_445_000, 2_400_000) {
		t.Error("tscClose: want 250 ppm tolerance")
	}
}

func TestXSaveBytesRoundTrip(t *testing.T) {
	var x kvm.XSave
	for i := range x.Region {
		x.Region[i] = uint32(i * 2654435761)
	}
	got, err := xsaveFromBytes(xsaveBytes(&x))
	if err != nil || *got != x {
		t.Fatalf("XSAVE round trip: %v", err)
	}
	if _, err := xsaveFromBytes(make([]byte, 100)); err == nil {
		t.Error("xsaveFromBytes accepted 100 bytes")
	}
}

// FuzzStateDecode feeds arbitrary bytes through what a destination does
// with a received State before touching KVM: binary decode, Validate, and
// the disk checks against a device. None of it may panic, and a state that
// decodes and validates survives a round trip unchanged.
func FuzzStateDecode(f *testing.F) {
	good, err := sampleState().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(stateMagic + "\x02\x00\x00\x00\x04\x00\x00\x00null\xff\xff\xff\xff"))
	f.Add([]byte(`null`))
	mem, dev := testDevice(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s State
		if err := s.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("decode error does not wrap ErrBadState: %v", err)
			}
			return
		}
		err := s.Validate()
		for _, d := range s.Disks {
			_ = checkDiskState(mem, dev.Transport(), d)
		}
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("Validate error does not wrap ErrBadState: %v", err)
			}
			return
		}
		// A valid state survives a round trip unchanged.
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var again State
		if err := again.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("re-encoded valid state no longer valid: %v", err)
		}
		if !reflect.DeepEqual(&again, &s) {
			t.Fatalf("binary round trip changed a valid state")
		}
	})
}
