package machine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vmmd/vmmd/pkg/kvm"
)

// errParked is returned by a vCPU's run loop when the guest did something
// that needs the controller (triple fault, system event, internal error):
// the vCPU parks itself and a request has been posted.
var errParked = errors.New("vCPU parked itself")

// vcpuReq is work for a parked vCPU thread: either run until told to stop,
// or call fn on the vCPU (KVM wants vCPU ioctls on the creating thread).
type vcpuReq struct {
	run  bool
	fn   func(*kvm.VCPU) error
	done chan error
}

type vcpu struct {
	id      int
	m       *Machine
	log     zerolog.Logger
	cpu     *kvm.VCPU // touched only by this vCPU's thread, except SetImmediateExit
	tid     int       // host thread id, set before the vCPU is announced ready
	reqs    chan vcpuReq
	quitCh  chan struct{}
	runDone chan error // set by startVCPUs, drained by stopVCPUs (under m.mu)
	initial *vcpuState
	// cpuid is the CPUID table as KVM reported it right after vmmd set it
	// (migration sends it; see saveVCPUFull).
	cpuid []kvm.CPUIDEntry
	// xsaveErr and xcrsErr say why this vCPU cannot take a migrated
	// XSAVE area or XCRs (nil: it can). Read once at creation for an
	// incoming VM, they cannot change before the vCPU first runs, so
	// LoadState checks against them instead of asking KVM in the downtime.
	xsaveErr, xcrsErr error
}

// readLocal records what this vCPU offers a migrated state; on the vCPU's
// thread, before it runs.
func (v *vcpu) readLocal() {
	_, v.xsaveErr = v.cpu.GetXSave()
	x, err := v.cpu.GetXCRs()
	if err == nil && usableXCRs(x, nil) == nil {
		err = errors.New("no XSAVE")
	}
	v.xcrsErr = err
}

// createVCPUs starts one goroutine per vCPU. Each locks itself to an OS
// thread and creates its vCPU there: KVM expects vCPU ioctls from the thread
// that created the vCPU, and Go must never move the goroutine off it.
func (m *Machine) createVCPUs(ctx context.Context) error {
	mmapSize, err := m.sys.VCPUMmapSize()
	if err != nil {
		return fmt.Errorf("create vCPUs: %w", err)
	}
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return fmt.Errorf("create vCPUs: %w", err)
	}
	for id := 0; id < m.cfg.CPUs; id++ {
		v := &vcpu{id: id, m: m, log: m.log.With().Int("vcpu", id).Logger(),
			reqs: make(chan vcpuReq), quitCh: make(chan struct{})}
		ready := make(chan error, 1)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			v.thread(mmapSize, supported, ready)
		}()
		select {
		case err := <-ready:
			if err != nil {
				close(v.quitCh)
				return fmt.Errorf("create vCPU %d: %w", id, err)
			}
		case <-ctx.Done():
			close(v.quitCh)
			return fmt.Errorf("create vCPU %d: %w", id, ctx.Err())
		}
		m.vcpus = append(m.vcpus, v)
	}
	return nil
}

// thread is the body of a vCPU goroutine. It never unlocks the OS thread, so
// the thread exits with the goroutine and no other goroutine inherits it.
func (v *vcpu) thread(mmapSize int, supported *kvm.CPUID, ready chan<- error) {
	runtime.LockOSThread()
	v.tid = unix.Gettid()
	cpu, err := v.m.vm.CreateVCPU(v.id, mmapSize)
	if err == nil {
		v.cpu = cpu
		err = v.setup(supported)
		if err != nil {
			cpu.Close()
		}
	}
	ready <- err
	if err != nil {
		return
	}
	defer v.cpu.Close()
	for {
		select {
		case <-v.quitCh:
			return
		case r := <-v.reqs:
			// Only a request marked run (startVCPUs's) enters the guest;
			// anything else is an ioctl on the parked vCPU.
			switch {
			case r.run:
				r.done <- v.run()
			case r.fn != nil:
				r.done <- r.fn(v.cpu)
			default:
				r.done <- errors.New("vCPU request with neither run nor a function")
			}
		}
	}
}

// setup configures a fresh vCPU: CPUID, boot registers for the BSP, and a
// snapshot of its reset state for system_reset.
func (v *vcpu) setup(supported *kvm.CPUID) error {
	tscKHz, err := v.cpu.GetTSCKHz()
	if err != nil {
		v.log.Warn().Err(err).Msg("no TSC frequency from KVM; the guest will calibrate its own")
		tscKHz = 0
	}
	deadline, err := v.m.sys.CheckExtension(kvm.CapTSCDeadlineTimer)
	if err != nil {
		deadline = 0
	}
	if err := v.cpu.SetCPUID2(guestCPUID(supported, v.id, v.m.cfg.CPUs, tscKHz, deadline > 0)); err != nil {
		return err
	}
	id, err := v.cpu.GetCPUID2()
	if err != nil {
		return err
	}
	v.cpuid = id.Entries
	if err := v.initLAPIC(); err != nil {
		return err
	}
	if v.initial, err = saveVCPU(v.cpu); err != nil {
		return fmt.Errorf("save reset state: %w", err)
	}
	if v.m.needState {
		v.readLocal()
	}
	if v.id == 0 {
		return v.m.applyEntry(v.cpu)
	}
	return nil
}

// initLAPIC routes LINT0 to ExtINT and LINT1 to NMI, as firmware does on
// real machines, so that the legacy PIC works through the BSP's LAPIC.
func (v *vcpu) initLAPIC() error {
	l, err := v.cpu.GetLAPIC()
	if err != nil {
		return err
	}
	const (
		lvtLINT0    = 0x350
		lvtLINT1    = 0x360
		modeExtINT  = 0x7 << 8
		modeNMI     = 0x4 << 8
		lvtModeMask = 0x7 << 8
	)
	setLVT(l, lvtLINT0, modeExtINT, lvtModeMask)
	setLVT(l, lvtLINT1, modeNMI, lvtModeMask)
	return v.cpu.SetLAPIC(l)
}

func setLVT(l *kvm.LAPICState, off int, mode, mask uint32) {
	r := uint32(l.Regs[off]) | uint32(l.Regs[off+1])<<8 | uint32(l.Regs[off+2])<<16 | uint32(l.Regs[off+3])<<24
	r = r&^mask | mode
	l.Regs[off], l.Regs[off+1], l.Regs[off+2], l.Regs[off+3] = byte(r), byte(r>>8), byte(r>>16), byte(r>>24)
}

// call runs fn on the vCPU's own thread while it is parked.
func (v *vcpu) call(ctx context.Context, fn func(*kvm.VCPU) error) error {
	done := make(chan error, 1)
	select {
	case v.reqs <- vcpuReq{fn: fn, done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onEachVCPU runs fn on every stopped vCPU's own thread, all at once: a
// thread hand-off and a dozen vCPU ioctls cost ~0.1 ms per vCPU on these
// hosts, and the migration downtime pays for them. It returns the error of
// the lowest-numbered vCPU that failed, naming it with what; the others
// still ran.
func (m *Machine) onEachVCPU(ctx context.Context, what string, fn func(v *vcpu, c *kvm.VCPU) error) error {
	errs := make([]error, len(m.vcpus))
	each := func(i int) {
		v := m.vcpus[i]
		errs[i] = v.call(ctx, func(c *kvm.VCPU) error { return fn(v, c) })
	}
	// The first vCPU's hand-off from this goroutine, the others' from
	// goroutines of their own: a guest with one vCPU starts none.
	var wg sync.WaitGroup
	for i := 1; i < len(m.vcpus); i++ {
		wg.Go(func() { each(i) })
	}
	each(0)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s vCPU %d: %w", what, m.vcpus[i].id, err)
		}
	}
	return nil
}

// kick forces the vCPU out of KVM_RUN (immediate_exit, then a signal to
// its thread; see kvm.VCPU.Kick for why that order loses no wake-up).
func (v *vcpu) kick() {
	if err := v.cpu.Kick(); err != nil {
		v.log.Warn().Err(err).Msg("kick vCPU")
	}
}

func (v *vcpu) quit() {
	select {
	case <-v.quitCh:
	default:
		close(v.quitCh)
	}
}

// checkMigrated refuses a migrated vCPU state this vCPU cannot take.
func (v *vcpu) checkMigrated(vs *VCPUState) error {
	if len(vs.XSave) != 0 && v.xsaveErr != nil {
		return fmt.Errorf("the source sent XSAVE state, this host has none: %w", v.xsaveErr)
	}
	if vs.XCRs != nil && vs.XCRs.NrXCRs > 0 && v.xcrsErr != nil {
		return fmt.Errorf("the source sent %d XCRs, this host has none: %w", vs.XCRs.NrXCRs, v.xcrsErr)
	}
	return checkCPUID(v.id, vs.CPUID, v.cpuid)
}
