package block

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"
)

// OpenOptions configure OpenDrive and NewDrive.
type OpenOptions struct {
	// Inactive opens the drive without taking the image (no lock, no NBD
	// connection), as vmmd does with --incoming: the migration source
	// still owns the image until it inactivates.
	Inactive bool
	// Log receives the drive's log lines; the zero value discards them.
	Log zerolog.Logger
}

// Drive is one guest disk: its spec, its backend (behind the fault
// injection layer) and its activation state. It implements Activatable.
// The device emulation calls ReadAt, WriteAt and Flush from any number of
// goroutines; the gate calls Activate and Inactivate.
//
// An active drive owns its image (file: image locks held; NBD: connected)
// and serves requests. An inactive one owns nothing and refuses requests:
// writes with QEMU's "Permission 'write' unavailable on inactive node",
// reads likewise (QEMU still allows reads there; we do not, because an
// inactive NBD drive has no connection to read from).
type Drive struct {
	spec   DriveSpec
	be     Backend // the injection layer over the real backend
	faults *faults
	log    zerolog.Logger

	stateMu sync.Mutex // serialises Activate, Inactivate and Close

	mu        sync.Mutex
	active    bool
	accepting bool // admits new requests: active and not draining
	closed    bool
	inflight  int
	idle      chan struct{} // closed when inflight drops to 0 during a drain
	ioStatus  IOStatus
}

// OpenDrive opens the storage of a spec and returns the drive, active
// (image taken) unless opts.Inactive.
func OpenDrive(ctx context.Context, spec DriveSpec, opts OpenOptions) (*Drive, error) {
	ns, err := spec.Normalize()
	if err != nil {
		return nil, fmt.Errorf("drive %s: %w", spec.ID, err)
	}
	spec = ns
	log := opts.Log.With().Str("drive", spec.ID).Logger()
	be, err := OpenBackend(ctx, spec, log)
	if err != nil {
		return nil, fmt.Errorf("drive %s: %w", spec.ID, err)
	}
	d, err := NewDrive(ctx, spec, be, opts)
	if err != nil {
		_ = be.Close(ctx)
		return nil, err
	}
	return d, nil
}

// NewDrive builds a drive over an opened, released backend (tests use it
// with fakes) and activates it unless opts.Inactive. On error the caller
// still owns the backend.
func NewDrive(ctx context.Context, spec DriveSpec, be Backend, opts OpenOptions) (*Drive, error) {
	ns, err := spec.Normalize()
	if err != nil {
		return nil, fmt.Errorf("drive %s: %w", spec.ID, err)
	}
	spec = ns
	f := &faults{}
	d := &Drive{
		spec:     spec,
		be:       &injectBackend{Backend: be, faults: f, timeout: spec.IOTimeout()},
		faults:   f,
		log:      opts.Log.With().Str("drive", spec.ID).Logger(),
		ioStatus: IOStatusOK,
	}
	if !opts.Inactive {
		if err := d.Activate(ctx); err != nil {
			return nil, fmt.Errorf("drive %s: %w", spec.ID, err)
		}
	}
	d.log.Info().Str("file", be.Describe()).Int64("size", be.Size()).Bool("active", d.Active()).
		Bool("readonly", spec.ReadOnly).Str("cache", string(spec.Cache)).Msg("drive opened")
	return d, nil
}

// Name returns the drive id.
func (d *Drive) Name() string { return d.spec.ID }

// Spec returns the drive's spec.
func (d *Drive) Spec() DriveSpec { return d.spec }

// ReadOnly reports whether the drive refuses writes.
func (d *Drive) ReadOnly() bool { return d.spec.ReadOnly }

// Size returns the image size in bytes, as read at the last activation.
func (d *Drive) Size() int64 { return d.be.Size() }

// BlockSize returns the request alignment the backend needs (512 or more);
// the device should advertise it as its logical block size.
func (d *Drive) BlockSize() int { return d.be.BlockSize() }

// PolicyFor returns the werror/rerror action for a failed request.
func (d *Drive) PolicyFor(op Op) Action { return d.spec.PolicyFor(op) }

// Active reports whether the drive owns its image.
func (d *Drive) Active() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.active
}

// Activate takes the image (file: QEMU-compatible image locks, failing with
// `Failed to get "write" lock` when another process holds it; NBD: connect)
// and re-reads the size. On an active drive whose backend is healthy it does
// nothing; on an active drive whose backend broke (an NBD connection that
// timed out) it repairs the backend, which is how cont recovers from an
// I/O-error pause.
func (d *Drive) Activate(ctx context.Context) error {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	d.mu.Lock()
	closed, active := d.closed, d.active
	d.mu.Unlock()
	if closed {
		return fmt.Errorf("drive %s: %w", d.spec.ID, ErrClosed)
	}
	if active && d.be.Err() == nil {
		return nil
	}
	if err := d.be.Acquire(ctx); err != nil {
		d.log.Warn().Err(err).Bool("was_active", active).Msg("activation failed")
		return err
	}
	d.mu.Lock()
	d.active, d.accepting = true, true
	d.mu.Unlock()
	d.log.Info().Int64("size", d.be.Size()).Bool("was_active", active).Msg("drive activated")
	return nil
}

// Inactivate hands the image over: it stops admitting requests, waits for
// those in flight (bounded by ctx; each is bounded by the I/O timeout
// anyway), flushes, and releases the image (file: drop the locks; NBD:
// disconnect). On failure the drive stays active and admits requests
// again, and the error names the step ("flush: ..."). Inactivating an
// inactive drive does nothing.
func (d *Drive) Inactivate(ctx context.Context) error {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	if !d.Active() {
		return nil
	}
	if err := d.inactivate(ctx); err != nil {
		d.mu.Lock()
		d.accepting = !d.closed
		d.mu.Unlock()
		d.log.Warn().Err(err).Msg("inactivation failed; drive stays active")
		return err
	}
	d.log.Info().Msg("drive inactivated")
	return nil
}

func (d *Drive) inactivate(ctx context.Context) error {
	if err := d.drain(ctx); err != nil {
		return err
	}
	if !d.spec.ReadOnly {
		if err := d.be.Flush(ctx); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	if err := d.be.Release(ctx); err != nil {
		return fmt.Errorf("release image: %w", err)
	}
	d.mu.Lock()
	d.active = false
	d.mu.Unlock()
	return nil
}

// drain stops admitting requests and waits until none is in flight.
func (d *Drive) drain(ctx context.Context) error {
	d.mu.Lock()
	d.accepting = false
	if d.inflight == 0 {
		d.mu.Unlock()
		return nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle, n := d.idle, d.inflight
	d.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain: %d request(s) still in flight: %w", n, ctx.Err())
	}
}

// Close inactivates the drive if it is active (so that flushed data and
// released locks are the normal way out) and closes the backend. The
// backend is closed even when inactivation fails; both errors are returned.
func (d *Drive) Close(ctx context.Context) error {
	err := d.Inactivate(ctx)
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return err
	}
	d.closed, d.accepting, d.active = true, false, false
	d.mu.Unlock()
	if cerr := d.be.Close(ctx); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("close drive %s: %w", d.spec.ID, err)
	}
	return nil
}

// Inject adds a fault rule; rules are consulted in the order added.
func (d *Drive) Inject(rule FaultRule) error {
	if err := rule.Validate(); err != nil {
		return fmt.Errorf("drive %s: %w", d.spec.ID, err)
	}
	d.faults.add(rule)
	d.log.Warn().Str("rule", rule.String()).Msg("fault injection rule added")
	return nil
}

// ClearInjections removes every fault rule.
func (d *Drive) ClearInjections() {
	d.faults.clear()
	d.log.Info().Msg("fault injection rules cleared")
}

// Injections returns the active fault rules, with Count as the hits left.
func (d *Drive) Injections() []FaultRule { return d.faults.list() }

// The gate drives Drives; the drive drives either backend.
var (
	_ Activatable = (*Drive)(nil)
	_ Backend     = (*FileBackend)(nil)
	_ Backend     = (*NBDBackend)(nil)
)
