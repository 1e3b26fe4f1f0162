package block

import (
	"context"
	"fmt"
	"time"
)

// ReadAt reads len(p) bytes at byte offset off. Offset and length must be
// multiples of BlockSize and inside the disk; p may have any alignment. A
// failure of the storage is an *IOError (errors.Is ErrIO; ErrTimeout when it
// timed out), subject to the rerror policy; other errors (inactive drive,
// bad request) are not storage failures and get no policy.
//
// Cancelling ctx abandons the request; for NBD that breaks the connection
// (the protocol cannot withdraw a request), which the next request or
// Activate repairs by reconnecting.
func (d *Drive) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.checkRange(OpRead, off, len(p)); err != nil {
		return err
	}
	if err := d.enter("consistent read"); err != nil {
		return err
	}
	defer d.leave()
	if len(p) == 0 {
		return nil
	}
	if err := d.be.ReadAt(ctx, p, off); err != nil {
		return &IOError{Op: OpRead, Off: off, Len: len(p), Err: err}
	}
	return nil
}

// WriteAt writes p at byte offset off (same rules as ReadAt; werror policy).
// WriteFUA makes the write durable before it completes.
func (d *Drive) WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error {
	if d.spec.ReadOnly {
		return fmt.Errorf("write %d bytes at offset %d: %w", len(p), off, ErrReadOnly)
	}
	if err := d.checkRange(OpWrite, off, len(p)); err != nil {
		return err
	}
	if err := d.enter("write"); err != nil {
		return err
	}
	defer d.leave()
	if len(p) == 0 {
		return nil
	}
	if err := d.be.WriteAt(ctx, p, off, flags); err != nil {
		return &IOError{Op: OpWrite, Off: off, Len: len(p), Err: err}
	}
	return nil
}

// Flush makes every completed write durable (werror policy on failure). On
// an inactive drive there is nothing to flush: inactivation flushed.
func (d *Drive) Flush(ctx context.Context) error {
	if d.spec.ReadOnly {
		return nil
	}
	if err := d.enter("write"); err != nil {
		if !d.Active() {
			return nil
		}
		return err
	}
	defer d.leave()
	if err := d.be.Flush(ctx); err != nil {
		return &IOError{Op: OpFlush, Err: err}
	}
	return nil
}

func (d *Drive) checkRange(op Op, off int64, n int) error {
	size, bs := d.be.Size(), int64(d.be.BlockSize())
	switch {
	case off < 0 || off > size || int64(n) > size-off:
		return fmt.Errorf("%s %d bytes at offset %d: %w: beyond the end of the %d-byte disk", op, n, off, ErrInvalidRequest, size)
	case off%bs != 0 || int64(n)%bs != 0:
		return fmt.Errorf("%s %d bytes at offset %d: %w: not aligned to the %d-byte block size", op, n, off, ErrInvalidRequest, bs)
	}
	return nil
}

// enter admits a request, or refuses it with QEMU's text for perm when the
// drive is inactive or draining.
func (d *Drive) enter(perm string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("drive %s: %w", d.spec.ID, ErrClosed)
	}
	if !d.accepting {
		return &InactiveError{Perm: perm}
	}
	d.inflight++
	return nil
}

func (d *Drive) leave() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	if d.inflight == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// Info is what query-block shows about a drive.
type Info struct {
	Device    string        // the drive id
	File      string        // path or NBD URI
	Driver    string        // protocol: "file" or "nbd"
	Format    Format        // always raw
	ReadOnly  bool          // ro
	Active    bool          // active (QEMU 10.0+)
	Size      int64         // virtual-size in bytes
	BlockSize int           // logical block size in bytes
	Cache     CacheMode     // writeback or none (cache.direct = none)
	WError    Action        // werror
	RError    Action        // rerror
	IOStatus  IOStatus      // io-status
	Timeout   time.Duration // per-operation timeout
	Healthy   bool          // the backend can serve requests now
}

// Info returns the drive's state for query-block.
func (d *Drive) Info() Info {
	d.mu.Lock()
	active, st := d.active, d.ioStatus
	d.mu.Unlock()
	drv := "file"
	if d.spec.IsNBD() {
		drv = "nbd"
	}
	return Info{
		Device:    d.spec.ID,
		File:      d.spec.File,
		Driver:    drv,
		Format:    FormatRaw,
		ReadOnly:  d.spec.ReadOnly,
		Active:    active,
		Size:      d.be.Size(),
		BlockSize: d.be.BlockSize(),
		Cache:     d.spec.Cache,
		WError:    d.spec.WError,
		RError:    d.spec.RError,
		IOStatus:  st,
		Timeout:   d.spec.IOTimeout(),
		Healthy:   active && d.be.Err() == nil,
	}
}

// SetIOStatus records the drive's I/O status: the machine sets it (with
// IOStatusOf(err)) when it stops the VM for this drive's error, and resets
// it to IOStatusOK on cont, as QEMU does.
func (d *Drive) SetIOStatus(s IOStatus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ioStatus = s
}
