package machine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/kvm"
)

// wireNotify makes the guest's queue notifications for d an ioeventfd:
// KVM completes the MMIO write itself and signals an eventfd, instead of
// exiting to vmmd's vCPU thread (an exit costs tens of microseconds on
// these hosts). A goroutine owned by the machine turns signals into
// device wake-ups; closing the eventfd (teardown) ends it.
func (m *Machine) wireNotify(d *disk) error {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd for drive %s: %w", d.drive.Name(), err)
	}
	f := os.NewFile(uintptr(fd), "virtio-notify-"+d.drive.Name())
	err = m.vm.IOEventFD(kvm.IOEvent{Addr: d.base + virtio.RegQueueNotify, Len: 4, FD: fd,
		DataMatch: 0, Flags: kvm.IOEventFDFlagDataMatch})
	if err != nil {
		f.Close()
		return fmt.Errorf("ioeventfd for drive %s: %w", d.drive.Name(), err)
	}
	d.notify = f
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		var buf [8]byte
		for {
			if _, err := f.Read(buf[:]); err != nil {
				return // closed by teardown
			}
			d.dev.Notify(0)
		}
	}()
	return nil
}
