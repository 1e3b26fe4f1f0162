package blk

import (
	"bytes"
	"context"
	"reflect"
	"syscall"
	"testing"
	"time"
)

func pause(t *testing.T, d *Device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStateRoundTrip migrates a device with a stopped request to a second
// device on the same guest memory and storage: the destination retries the
// request and carries on with the rings.
func TestStateRoundTrip(t *testing.T) {
	disk := newDisk(1 << 20)
	src := newEnv(t, disk, policyOf(ActionStop))
	src.up(layout())
	if st, _ := src.do(TypeOut, 0, vbuf{Addr: dataArea, Len: 512}); st != StatusOK {
		t.Fatal("first write failed")
	}
	want := pattern(2048, 4)
	src.write(dataArea+0x1000, want)
	disk.failNext(OpWrite, -1, syscall.EIO)
	head, st := src.request(TypeOut, 16, vbuf{Addr: dataArea + 0x1000, Len: 2048})
	eventually(t, "stop", func() bool { return src.dev.Pending() == 1 })
	pause(t, src.dev)
	s, err := src.dev.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Pending) != 1 || s.Pending[0] != head {
		t.Fatalf("pending %v, want [%d]", s.Pending, head)
	}
	q := s.Transport.Queues[0]
	if q.LastAvail != 2 || q.UsedIdx != 1 || !q.Ready {
		t.Fatalf("queue state %+v", q)
	}

	// The destination: same memory and disk, storage healthy again.
	disk.failNext(OpWrite, 0, nil)
	dst := newEnvMem(t, src.mem, disk)
	drv := *src.drv
	drv.Dev = dst.dev
	dst.drv = &drv
	if err := dst.dev.SetState(s); err == nil {
		t.Fatal("SetState on a running device succeeded")
	}
	pause(t, dst.dev)
	if err := dst.dev.SetState(s); err != nil {
		t.Fatal(err)
	}
	got, err := dst.dev.State()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("state round trip:\n got %+v\nwant %+v", got, s)
	}
	dst.dev.Resume()
	dst.wait(2)
	if dst.statusAt(st) != StatusOK || !bytes.Equal(disk.bytes(16*512, 2048), want) {
		t.Fatal("pending write not retried on the destination")
	}
	if st, _ := dst.do(TypeIn, 16, vbuf{Addr: dataArea + 0x8000, Len: 2048, Write: true}); st != StatusOK {
		t.Fatal("read on the destination failed")
	}
	if !bytes.Equal(dst.read(dataArea+0x8000, 2048), want) {
		t.Error("destination read other data")
	}
}

func TestSetStateRefusesBadPending(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk)
	e.up(layout())
	pause(t, e.dev)
	s, err := e.dev.State()
	if err != nil {
		t.Fatal(err)
	}
	for name, pending := range map[string][]uint16{
		"head out of range": {64},
		"head twice":        {0, 0},
		"too many":          make([]uint16, 65),
		"no request there":  {5}, // descriptor 5 is zero: no status byte
	} {
		bad := s
		bad.Pending = pending
		if err := e.dev.SetState(bad); err == nil {
			t.Errorf("%s: SetState succeeded", name)
		}
	}
	// A refused restore leaves the device reset.
	if e.drv.Read32(0x070) != 0 {
		t.Error("device not reset after a refused restore")
	}
	// Pending requests need an active device.
	s.Transport.Status = 0
	s.Transport.DriverFeatures = 0
	s.Pending = []uint16{0}
	if err := e.dev.SetState(s); err == nil {
		t.Error("pending requests on an inactive device accepted")
	}
}
