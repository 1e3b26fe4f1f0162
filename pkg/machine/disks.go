package machine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/devices/virtio/blk"
)

// virtio-mmio windows sit at the bottom of the MMIO hole, one 4 KiB window
// per device, as Firecracker lays them out. IRQs are ISA-range IOAPIC pins
// nothing else uses here (8 is the RTC's, 4 the serial port's).
const virtioBase = 0xD000_0000

func virtioIRQ(i int) uint32 { return [...]uint32{5, 6, 7, 9, 10, 11, 12, 14, 15}[i] }

// MaxDrives is how many disks a VM can have (one free IRQ each).
const MaxDrives = 9

// disk is one guest disk: the drive (storage, activation) and the virtio-blk
// device the guest sees.
type disk struct {
	drive  *block.Drive
	dev    *blk.Device
	base   uint64
	irq    uint32
	notify *os.File // ioeventfd for queue notifications; nil if KVM refused
}

// driveBackend adapts a block.Drive to what the virtio-blk device needs.
type driveBackend struct{ d *block.Drive }

func (b driveBackend) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := b.d.ReadAt(ctx, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (b driveBackend) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := b.d.WriteAt(ctx, p, off, 0); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (b driveBackend) Flush(ctx context.Context) error { return b.d.Flush(ctx) }
func (b driveBackend) Size() uint64                    { return uint64(max(b.d.Size(), 0)) }
func (b driveBackend) ReadOnly() bool                  { return b.d.ReadOnly() }
func (b driveBackend) ID() string                      { return b.d.Name() }

// policy maps the drive's werror/rerror onto the device's actions. Only
// storage failures (block.ErrIO) are subject to it; a request the drive
// refuses for another reason (say, writing while inactive) is reported.
func policy(d *block.Drive) blk.ErrorPolicy {
	return func(op blk.Op, err error) blk.Action {
		if !errors.Is(err, block.ErrIO) {
			return blk.ActionReport
		}
		bop, perr := block.ParseOp(string(op))
		if perr != nil {
			return blk.ActionReport
		}
		switch d.PolicyFor(bop) {
		case block.ActionStop:
			return blk.ActionStop
		case block.ActionIgnore:
			return blk.ActionIgnore
		}
		return blk.ActionReport
	}
}

// ioErrorReason is BLOCK_IO_ERROR's reason: like QEMU, the system error
// text ("Input/output error") when there is one; the full chain is logged.
func ioErrorReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	if errors.Is(err, block.ErrTimeout) {
		return "Connection timed out"
	}
	return err.Error()
}

// attachDisks creates a virtio-blk device per drive and announces them on
// the kernel command line (the test guest and kernels built with
// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES read it).
func (m *Machine) attachDisks() error {
	if len(m.cfg.Drives) > MaxDrives {
		return &ConfigError{fmt.Errorf("%d drives: vmmd supports at most %d", len(m.cfg.Drives), MaxDrives)}
	}
	var args []string
	for i, d := range m.cfg.Drives {
		base, irq := uint64(virtioBase+i*virtio.WindowSize), virtioIRQ(i)
		dlog := m.log.With().Str("device", "virtio-blk").Str("drive", d.Name()).Logger()
		dev, err := blk.New(blk.Config{
			Backend: driveBackend{d}, Memory: m.mem, Base: base, IRQ: irq, IRQLine: m.vm.IRQLine,
			Policy: policy(d),
			OnStop: func(op blk.Op, err error) {
				dlog.Error().Err(err).Str("operation", string(op)).Msg("disk request failed; error policy stop")
				m.post(request{kind: reqIOError, why: ioErrorReason(err), drive: d.Name(), op: string(op)})
			},
			OnError: func(err error) { dlog.Warn().Err(err).Msg("virtio-blk device error") },
		})
		if err != nil {
			return fmt.Errorf("create virtio-blk for drive %s: %w", d.Name(), err)
		}
		m.disks = append(m.disks, &disk{drive: d, dev: dev, base: base, irq: irq})
		if err := m.bus.RegisterMMIO(base, virtio.WindowSize, dev, "virtio-blk-"+d.Name()); err != nil {
			return fmt.Errorf("register virtio-blk for drive %s: %w", d.Name(), err)
		}
		if err := m.wireNotify(m.disks[len(m.disks)-1]); err != nil {
			// Not fatal: notifications then arrive as ordinary MMIO exits.
			dlog.Warn().Err(err).Msg("queue notifications will exit to vmmd")
		}
		args = append(args, virtio.CmdlineArg(base, virtio.WindowSize, irq))
		dlog.Info().Str("base", hex(base)).Uint32("irq", irq).Int64("size", d.Size()).
			Bool("active", d.Active()).Msg("disk attached")
	}
	if len(args) > 0 {
		m.cfg.Cmdline = strings.TrimSpace(m.cfg.Cmdline + " " + strings.Join(args, " "))
	}
	return nil
}

// Drives returns the VM's drives, in --drive order.
func (m *Machine) Drives() []*block.Drive { return append([]*block.Drive(nil), m.cfg.Drives...) }

// Gate returns the block reactivation gate.
func (m *Machine) Gate() *block.Gate { return m.gate }

// pauseDisks quiesces every disk device: no new requests, in-flight ones
// finished. Caller holds m.mu with the vCPUs stopped.
func (m *Machine) pauseDisks(ctx context.Context) error {
	var errs []error
	for _, d := range m.disks {
		if err := d.dev.Pause(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pause disk %s: %w", d.drive.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// resumeDisks lets the disk devices take requests again; requests a stop
// policy parked are retried first.
func (m *Machine) resumeDisks() {
	for _, d := range m.disks {
		d.dev.Resume()
	}
}

// closeNotifiers ends the ioeventfd goroutines; teardown calls it before
// waiting for the machine's goroutines.
func (m *Machine) closeNotifiers() {
	for _, d := range m.disks {
		if d.notify != nil {
			d.notify.Close()
		}
	}
}

func (m *Machine) closeDisks() {
	for _, d := range m.disks {
		d.dev.Close()
	}
}
