package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/boot"
	"github.com/vmmd/vmmd/pkg/boot/acpi"
	"github.com/vmmd/vmmd/pkg/devices"
	"github.com/vmmd/vmmd/pkg/devices/serial"
	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/kvm"
	"github.com/vmmd/vmmd/pkg/memory"
)

// Guest-physical addresses KVM needs for its own use on Intel hosts (the
// real-mode TSS and the EPT identity map). They sit at the top of the MMIO
// hole, clear of RAM and of our devices, as in QEMU and Firecracker.
const (
	tssAddr         = 0xFFFB_D000
	identityMapAddr = 0xFFFB_C000

	serialBase = 0x3F8
	serialIRQ  = 4
)

// Config describes the VM to build.
type Config struct {
	Name    string
	Kernel  []byte
	Initrd  []byte
	Cmdline string
	Memory  uint64
	CPUs    int
	// NoACPI leaves out the ACPI tables (the MP table and the kernel
	// command line still describe CPUs and disks).
	NoACPI bool
	// SerialOut receives the guest's COM1 output; nil discards it.
	SerialOut io.Writer
	// Drives are the guest's disks, in order; each becomes a virtio-blk
	// device. The machine does not close them.
	Drives []*block.Drive
	// Gate is the block reactivation gate; nil means a gate over Drives.
	Gate *block.Gate
	// OnEvent is called (from a machine goroutine, never a vCPU thread) for
	// every event, after the run state has changed. It must not block long.
	OnEvent func(Event)
	Log     zerolog.Logger
	// Start is when the process started, for boot-progress timing.
	Start time.Time
	// Incoming builds the VM for an incoming migration: the state is
	// inmigrate instead of prelaunch, and no vCPU can start until
	// LoadState has filled in the source's state (the boot image is
	// loaded anyway; RAM is overwritten by the migration).
	Incoming bool
}

// Machine is one running (or runnable) VM.
type Machine struct {
	cfg Config
	log zerolog.Logger
	// resetLog is sampled: a guest stuck in a reset loop must not flood the log.
	resetLog zerolog.Logger
	sys      *kvm.System
	vm       *kvm.VM
	mem      *memory.Memory
	bus      *devices.Bus
	uart     *serial.UART
	gate     *block.Gate
	disks    []*disk
	entry    *boot.Entry
	vcpus    []*vcpu

	initChips []*kvm.IRQChip
	initPIT   *kvm.PITState2

	// msrIndex is KVM's list of MSRs to migrate (KVM_GET_MSR_INDEX_LIST),
	// read once on first use.
	msrOnce  sync.Once
	msrIndex []uint32
	msrErr   error

	// dirtyMu serialises dirty-log changes and syncs; dirtyOn says whether
	// KVM logs dirty pages; dirtyBuf is SyncDirty's bitmap, reused.
	dirtyMu  sync.Mutex
	dirtyOn  bool
	dirtyBuf []uint64

	// mu serialises run-state changes and vCPU start/stop. vCPU threads
	// never take it: they only set flags and post requests.
	mu      sync.Mutex
	state   RunState
	running bool // vCPUs are (or are being) run
	// needState is set on an incoming VM until LoadState succeeds: its
	// vCPUs hold a boot state, not the guest's, and must not run.
	needState bool

	stop       atomic.Bool // vCPUs must leave KVM_RUN and park
	violations atomic.Uint64
	requests   chan request

	cancel context.CancelFunc
	wg     sync.WaitGroup // vCPU and controller goroutines
	done   chan struct{}
	exit   atomic.Value // ExitReason
	closed atomic.Bool
}

// ConfigError is a request this host or this guest image cannot satisfy
// (too many vCPUs, a kernel that does not fit). vmmd reports it as bad input.
type ConfigError struct{ Err error }

// Error returns the underlying error's text.
func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// ExitReason says why a machine finished.
type ExitReason string

// Exit reasons reported by Done/Exit.
const (
	ExitPowerOff ExitReason = "poweroff" // the guest powered off
	ExitQuit     ExitReason = "quit"     // Close was called
)

// New builds the VM: KVM VM, memory, devices, boot image, vCPU threads. The
// vCPUs are created but not started; the state is prelaunch. Call Resume to
// start them.
func New(ctx context.Context, sys *kvm.System, cfg Config) (*Machine, error) {
	if cfg.CPUs < 1 {
		return nil, &ConfigError{fmt.Errorf("--cpus %d: need at least 1 vCPU", cfg.CPUs)}
	}
	if cfg.Gate == nil {
		acts := make([]block.Activatable, len(cfg.Drives))
		for i, d := range cfg.Drives {
			acts[i] = d
		}
		cfg.Gate = block.NewGate(acts...)
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	if cfg.SerialOut == nil {
		cfg.SerialOut = io.Discard
	}
	m := &Machine{
		cfg:      cfg,
		log:      cfg.Log,
		resetLog: cfg.Log.Sample(&zerolog.BurstSampler{Burst: 3, Period: 10 * time.Second}),
		sys:      sys,
		gate:     cfg.Gate,
		state:    StatePrelaunch,
		requests: make(chan request, 16),
		done:     make(chan struct{}),
	}
	if cfg.Incoming {
		m.state, m.needState = StateInMigrate, true
	}
	if err := m.build(ctx); err != nil {
		m.teardown()
		return nil, err
	}
	return m, nil
}

func (m *Machine) build(ctx context.Context) error {
	maxCPUs, err := m.sys.CheckExtension(kvm.CapMaxVCPUs)
	if err != nil || maxCPUs == 0 {
		maxCPUs, _ = m.sys.CheckExtension(kvm.CapNrVCPUs)
	}
	if maxCPUs > 0 && m.cfg.CPUs > maxCPUs {
		return &ConfigError{fmt.Errorf("--cpus %d: KVM on this host allows at most %d vCPUs", m.cfg.CPUs, maxCPUs)}
	}
	if m.cfg.CPUs > 254 {
		return &ConfigError{fmt.Errorf("--cpus %d: vmmd supports at most 254 vCPUs (xAPIC ids)", m.cfg.CPUs)}
	}
	m.vm, err = m.sys.CreateVM()
	if err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	if m.mem, err = memory.New(m.cfg.Memory); err != nil {
		return err
	}
	for i, r := range m.mem.Regions() {
		err := m.vm.SetUserMemoryRegion(kvm.UserMemoryRegion{
			Slot: uint32(i), GuestPhysAddr: r.GPA, MemorySize: r.Size, UserspaceAddr: uint64(m.mem.HostAddr(i)),
		})
		if err != nil {
			return fmt.Errorf("register guest RAM at %#x: %w", r.GPA, err)
		}
	}
	// The irqchip comes after guest RAM on purpose: once it exists, every
	// memory-slot change waits for an SRCU grace period in KVM (measured
	// here: 7 ms for the first slot, against 0.3 ms before it), which was
	// most of vmmd's start-up time.
	if err := m.vm.CreateIRQChip(); err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	// Speaker dummy: port 0x61 is answered inside KVM, as QEMU does.
	if err := m.vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	if err := m.buildDevices(); err != nil {
		return err
	}
	if err := m.attachDisks(); err != nil {
		return err
	}
	if m.entry, err = m.loadImage(); err != nil {
		return &ConfigError{err}
	}
	m.log.Info().Str("kernel", m.entry.Kind.String()).Str("memory", memory.FormatSize(m.cfg.Memory)).
		Int("cpus", m.cfg.CPUs).Msg("guest loaded")
	if err := m.createVCPUs(ctx); err != nil {
		return err
	}
	if err := m.snapshotChips(); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.control(runCtx)
	}()
	return nil
}

func (m *Machine) loadImage() (*boot.Entry, error) {
	entry, err := boot.Load(m.mem, boot.Config{Kernel: m.cfg.Kernel, Initrd: m.cfg.Initrd,
		Cmdline: m.cfg.Cmdline, CPUs: m.cfg.CPUs, ACPI: m.acpiConfig()})
	if err != nil {
		return nil, fmt.Errorf("load kernel: %w", err)
	}
	if m.needState {
		// A VM waiting for an incoming guest loads the image only to check
		// it and to know its entry (reset state, a reset while waiting);
		// its RAM comes from the stream into all-zero memory, which lets
		// the destination skip the zero pages it has not written
		// (migrate.VM).
		if err := m.mem.Discard(); err != nil {
			return nil, err
		}
	}
	return entry, nil
}

// acpiConfig describes the devices a stock kernel must find through ACPI:
// COM1 and every virtio-mmio window.
func (m *Machine) acpiConfig() *acpi.Config {
	if m.cfg.NoACPI {
		return nil
	}
	c := &acpi.Config{Serial: true}
	for i, d := range m.disks {
		c.Devices = append(c.Devices, acpi.Device{Name: fmt.Sprintf("VR%02d", i), HID: "LNRO0005", UID: i,
			MMIOBase: d.base, MMIOSize: virtio.WindowSize, IRQ: d.irq})
	}
	return c
}

func (m *Machine) buildDevices() error {
	m.bus = devices.NewBus()
	m.uart = serial.New(serialIRQ, m.vm.IRQLine, m.cfg.SerialOut)
	firstMarker := atomic.Bool{}
	dlog := m.log.With().Str("device", "debug-port").Logger()
	regs := []struct {
		base, size uint16
		dev        devices.PortDevice
		name       string
	}{
		{serialBase, 8, m.uart, "serial0"},
		{0x80, 1, devices.NewDebugPort(m.cfg.Start, func(code byte, since time.Duration) {
			if firstMarker.CompareAndSwap(false, true) {
				dlog.Info().Dur("since_start_ms", since).Uint8("code", code).Msg("first boot-progress marker")
			} else {
				dlog.Debug().Dur("since_start_ms", since).Uint8("code", code).Msg("boot-progress marker")
			}
		}), "debug-port"},
		{0x604, 2, devices.NewPowerPort(func() { m.post(request{kind: reqPowerOff}) }), "acpi-pm1a-cnt"},
	}
	for _, r := range regs {
		if err := m.bus.RegisterPort(r.base, r.size, r.dev, r.name); err != nil {
			return fmt.Errorf("register %s: %w", r.name, err)
		}
	}
	if err := devices.NewSleepControl(func() { m.post(request{kind: reqPowerOff}) }).Register(m.bus); err != nil {
		return fmt.Errorf("register ACPI sleep control: %w", err)
	}
	reset := devices.NewResetPorts(func() { m.post(request{kind: reqReset, why: "guest-reset"}) })
	if err := reset.Register(m.bus); err != nil {
		return fmt.Errorf("register reset ports: %w", err)
	}
	if err := devices.NewQuietPorts().Register(m.bus); err != nil {
		return fmt.Errorf("register quiet ports: %w", err)
	}
	return nil
}

// SerialInput queues bytes for the guest's COM1 receiver and returns how many
// were accepted (the FIFO is bounded; input is never allowed to block).
func (m *Machine) SerialInput(p []byte) int { return m.uart.Input(p) }

// State returns the current run state.
func (m *Machine) State() RunState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// VCPUThreads returns each vCPU's host thread id, in vCPU order (QMP's
// query-cpus-fast reports them so operators can pin or inspect threads).
func (m *Machine) VCPUThreads() []int {
	ids := make([]int, len(m.vcpus))
	for i, v := range m.vcpus {
		ids[i] = v.tid
	}
	return ids
}

// InvariantViolations counts vCPU starts that found a disk inactive. It must
// stay 0; tests assert it.
func (m *Machine) InvariantViolations() uint64 { return m.violations.Load() }

// Done is closed when the machine has finished (guest poweroff or Close).
func (m *Machine) Done() <-chan struct{} { return m.done }

// Exit returns why the machine finished; empty while it has not.
func (m *Machine) Exit() ExitReason {
	r, _ := m.exit.Load().(ExitReason)
	return r
}

func (m *Machine) finish(r ExitReason) {
	if m.exit.CompareAndSwap(nil, r) {
		close(m.done)
	}
}

// Close stops the vCPUs, flushes the serial output and releases every
// resource. It is safe to call more than once.
func (m *Machine) Close(ctx context.Context) error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	m.mu.Lock()
	err := m.stopVCPUs(ctx)
	m.mu.Unlock()
	m.finish(ExitQuit)
	if m.uart != nil {
		if ferr := m.uart.Flush(ctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("flush serial output: %w", ferr))
		}
		m.logDeviceStats()
	}
	m.teardown()
	return err
}

// logDeviceStats reports, once, what devices counted instead of logging
// per access: dropped console output, failed interrupts, ports nobody owns.
func (m *Machine) logDeviceStats() {
	slog := m.log.With().Str("device", "serial0").Logger()
	if n := m.uart.Dropped(); n > 0 {
		slog.Warn().Uint64("bytes", n).Msg("console output dropped: the serial backend was too slow")
	}
	if n, err := m.uart.IRQFailures(); n > 0 {
		slog.Warn().Uint64("count", n).AnErr("first_error", err).Msg("serial interrupts could not be raised")
	}
	if u := m.bus.Unclaimed(); len(u) > 0 {
		m.log.Debug().Interface("ports", u).Msg("guest accessed ports no device claims")
	}
}

func (m *Machine) teardown() {
	if m.cancel != nil {
		m.cancel()
	}
	for _, v := range m.vcpus {
		v.quit()
	}
	m.closeNotifiers()
	m.wg.Wait()
	m.closeDisks()
	if m.uart != nil {
		m.uart.Close()
	}
	if m.vm != nil {
		m.vm.Close()
	}
	if m.mem != nil {
		m.mem.Close()
	}
}
