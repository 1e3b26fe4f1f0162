package blk

import (
	"context"
	"fmt"
	"io"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
)

// maxChunk bounds one backend call (and the bounce buffer).
const maxChunk = 1 << 20

// transfer moves total bytes between the data buffers and the backend at
// byte offset off, in chunks of at most maxChunk. A chunk inside one guest
// buffer goes straight to or from guest memory; others go through a bounce
// buffer. Chunks start at multiples of maxChunk from off, so every backend
// call is 512-byte aligned when the request is. It returns how many bytes
// were written into guest memory (reads) or to the backend (writes) before
// any error.
func (d *Device) transfer(ctx context.Context, write bool, bufs []virtio.Buffer, off int64, total uint64) (uint64, error) {
	var bounce *[]byte
	defer func() {
		if bounce != nil {
			d.bounce.Put(bounce)
		}
	}()
	var done uint64
	for done < total {
		n := min(total-done, maxChunk)
		seg := virtio.Sub(bufs, done, n)
		pos := off + int64(done)
		var p []byte
		if len(seg) == 1 {
			p = seg[0].Data
		} else {
			if bounce == nil {
				bounce = d.bounce.Get().(*[]byte)
			}
			p = (*bounce)[:n]
		}
		if write {
			if len(seg) > 1 {
				virtio.Gather(p, seg)
			}
			w, err := d.backend.WriteAt(ctx, p, pos)
			if err := short("write", w, len(p), err); err != nil {
				return done, fmt.Errorf("write %d bytes at offset %d: %w", n, pos, err)
			}
		} else {
			r, err := d.backend.ReadAt(ctx, p, pos)
			err = short("read", r, len(p), err)
			if len(seg) == 1 {
				// The backend wrote guest memory directly, perhaps in
				// part even if it failed.
				d.markDirty(seg)
			}
			if err != nil {
				return done, fmt.Errorf("read %d bytes at offset %d: %w", n, pos, err)
			}
			if len(seg) > 1 {
				virtio.Scatter(seg, p)
				d.markDirty(seg)
			}
		}
		done += n
	}
	return done, nil
}

// short turns a short transfer that reported no error into one.
func short(what string, n, want int, err error) error {
	if err == nil && n != want {
		return fmt.Errorf("short %s: %d of %d bytes: %w", what, n, want, io.ErrUnexpectedEOF)
	}
	return err
}

// markDirty records device writes into guest memory for migration.
func (d *Device) markDirty(bufs []virtio.Buffer) {
	for _, b := range bufs {
		d.markDirtyRange(b.GPA, uint64(len(b.Data)))
	}
}

// markDirtyRange marks [gpa, gpa+n). The range came from Memory.Slice, so
// this fails only if guest memory is torn down under the device; the guest
// cannot be told, so it goes to OnError.
func (d *Device) markDirtyRange(gpa, n uint64) {
	if err := d.mem.MarkDirty(gpa, n); err != nil && d.onError != nil {
		d.onError(fmt.Errorf("virtio-blk %q: %w", d.backend.ID(), err))
	}
}
