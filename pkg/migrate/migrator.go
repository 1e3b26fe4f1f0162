package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/machine"
)

// Config is what a Migrator needs.
type Config struct {
	VM VM
	// Emit sends a QMP event (MIGRATION, MIGRATION_PASS, ...). It must not
	// block long.
	Emit func(name string, data map[string]any)
	Log  zerolog.Logger
	// Incoming says vmmd was started with --incoming: the VM waits in
	// inmigrate and migrate-incoming is allowed.
	Incoming bool
	// Autostart starts the guest once an incoming migration completes
	// (false with --paused, as QEMU's -S).
	Autostart bool
}

// Errors with QEMU's texts.
var (
	ErrInProgress       = errors.New("There's a migration process in progress")
	ErrPostMigrate      = errors.New("Can't migrate the vm that was paused due to previous migration")
	ErrWaitingIncoming  = errors.New("Guest is waiting for an incoming migration")
	ErrIncomingStarted  = errors.New("The incoming migration has already been started")
	ErrNoIncomingOption = errors.New("'-incoming' was not specified on the command line")
)

// Migrator runs this daemon's migrations, one at a time in each direction:
// outgoing (migrate) or incoming (migrate-incoming).
type Migrator struct {
	cfg Config
	log zerolog.Logger

	// life bounds every job; Close cancels it and waits.
	life   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed bool

	mu        sync.Mutex
	params    Parameters
	caps      map[string]bool
	autostart bool
	cur       *job // the last migration, either direction
	incoming  bool // --incoming given
	arrived   bool // the incoming guest has arrived and its start is settled
	// arrival is held from the arriving guest's start decision until it
	// has started (or not): a stop or cont waits for it, so none is
	// acknowledged and then overtaken by the start it meant to prevent.
	arrival sync.Mutex
	// events mirrors caps["events"] for the event path, which must not take mu.
	events atomic.Bool
	// written marks the pages incoming streams have written (data or
	// delta) into this VM's RAM, which starts all zero: a zero page not
	// marked needs no work. Kept across attempts of migrate-incoming; only
	// the incoming engine, one at a time, uses it.
	written *dirtySet
}

// New returns a Migrator for cfg.VM.
func New(cfg Config) *Migrator {
	life, stop := context.WithCancel(context.Background())
	params := DefaultParameters()
	params.XBZRLECacheSize = defaultCacheSize(cfg.VM.RAM().Size())
	// Page deltas are on by default: they cost the source a bounded cache
	// and win most in the last pass, which is downtime.
	return &Migrator{cfg: cfg, log: cfg.Log.With().Str("component", "migration").Logger(),
		life: life, stop: stop, params: params, caps: map[string]bool{"xbzrle": true},
		autostart: cfg.Autostart, incoming: cfg.Incoming}
}

// Close cancels any migration in progress and waits for it to finish its
// clean-up (which may resume the guest on the source).
func (m *Migrator) Close() {
	m.mu.Lock()
	m.closed = true
	j := m.cur
	m.mu.Unlock()
	if j != nil {
		j.requestCancel()
	}
	m.stop()
	m.wg.Wait()
}

// Parameters returns the current parameters.
func (m *Migrator) Parameters() Parameters {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.params
}

// SetParameters applies change to a copy of the parameters and keeps it if
// it is valid. max-bandwidth changes apply to a running migration at once.
func (m *Migrator) SetParameters(change func(*Parameters)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.params
	change(&p)
	if err := p.Validate(); err != nil {
		return err
	}
	m.params = p
	if m.cur != nil && m.cur.lim != nil {
		m.cur.lim.setRate(p.MaxBandwidth)
	}
	return nil
}

// Capability is one migration capability and its state.
type Capability struct {
	Capability string `json:"capability"`
	State      bool   `json:"state"`
}

// Capabilities lists every capability with its state, in QEMU's order.
func (m *Migrator) Capabilities() []Capability {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := CapabilityNames()
	out := make([]Capability, len(names))
	for i, n := range names {
		out[i] = Capability{Capability: n, State: m.caps[n]}
	}
	return out
}

// SetCapabilities changes capabilities; refused while a migration runs (as
// QEMU) and for capabilities vmmd cannot honour.
func (m *Migrator) SetCapabilities(cs []Capability) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil && m.cur.status().inProgress() {
		return ErrInProgress
	}
	known := map[string]bool{}
	for _, n := range CapabilityNames() {
		known[n] = true
	}
	for _, c := range cs {
		if !known[c.Capability] {
			return fmt.Errorf("unknown migration capability %q", c.Capability)
		}
		if c.State && unsupportedCapabilities()[c.Capability] {
			return fmt.Errorf("migration capability '%s' is not supported by vmmd", c.Capability)
		}
	}
	for _, c := range cs {
		m.caps[c.Capability] = c.State
	}
	m.events.Store(m.caps["events"])
	return nil
}

// SetAutostart changes whether an incoming guest starts when it arrives
// (stop and cont during inmigrate do this, as in QEMU). It reports whether
// that is what stop or cont means now: true while this daemon still waits
// for (or is settling) an incoming guest; false otherwise, and then the
// caller stops or continues the VM itself. The arrival re-reads the flag
// after it started (or did not start) the guest, under the same lock, so a
// stop or cont acknowledged here is never lost.
func (m *Migrator) SetAutostart(on bool) bool {
	m.arrival.Lock()
	defer m.arrival.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.incoming || m.arrived {
		return false
	}
	m.autostart = on
	return true
}

// settleArrival ends the incoming guest's arrival if what was done (started
// or not) still matches autostart; otherwise the arrival acts again.
func (m *Migrator) settleArrival(started, sourceRan, force bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if force || started == (m.autostart && sourceRan) {
		m.arrived = true
		return true
	}
	return false
}

// Autostart reports whether an incoming guest will start when it arrives.
func (m *Migrator) Autostart() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.autostart
}

// Info returns query-migrate's reply.
func (m *Migrator) Info() Info {
	m.mu.Lock()
	j := m.cur
	m.mu.Unlock()
	if j == nil {
		return Info{}
	}
	return j.info()
}

// Wait blocks until the current migration (if any) has finished, or ctx
// ends, and returns its final status.
func (m *Migrator) Wait(ctx context.Context) (Status, error) {
	m.mu.Lock()
	j := m.cur
	m.mu.Unlock()
	if j == nil {
		return StatusNone, nil
	}
	select {
	case <-j.done:
		return j.status(), nil
	case <-ctx.Done():
		return j.status(), ctx.Err()
	}
}

// Cancel asks the migration in progress to stop (migrate_cancel). It
// returns at once; the engine reactivates the disks and resumes the guest
// on its own path. A migration that is not in progress is left alone.
func (m *Migrator) Cancel() {
	m.mu.Lock()
	j := m.cur
	m.mu.Unlock()
	if j != nil && j.outgoing {
		j.requestCancel()
	}
}

// Migrate starts an outgoing migration to uri and returns once it has
// started; query-migrate follows it.
func (m *Migrator) Migrate(ctx context.Context, uri string) error {
	u, err := ParseURI(uri)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return machine.ErrClosed
	}
	if m.cur != nil && m.cur.status().inProgress() {
		return ErrInProgress
	}
	switch m.cfg.VM.State() {
	case machine.StatePostMigrate:
		return ErrPostMigrate
	case machine.StateInMigrate:
		return ErrWaitingIncoming
	case machine.StateShutdown:
		return fmt.Errorf("the guest has shut down; there is nothing to migrate")
	}
	j := m.newJob(true, u)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.runSource(j)
	}()
	return nil
}

// Incoming starts waiting for an incoming migration on uri
// (migrate-incoming, or --incoming URI).
func (m *Migrator) Incoming(ctx context.Context, uri string) error {
	u, err := ParseURI(uri)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return machine.ErrClosed
	}
	if !m.incoming || m.cfg.VM.State() != machine.StateInMigrate {
		return ErrNoIncomingOption
	}
	// Unlike QEMU, a failed incoming migration can be retried: the VM has
	// not run, and a new stream overwrites all of RAM and every device.
	if m.cur != nil && (m.cur.status().inProgress() || m.cur.status() == StatusCompleted) {
		return ErrIncomingStarted
	}
	l, err := listen(ctx, u)
	if err != nil {
		return err
	}
	j := m.newJob(false, u)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.runDest(j, l)
	}()
	return nil
}

// IncomingArrived reports whether an incoming guest has been loaded and
// committed but not started (autostart off, or its disks could not be
// activated): cont then starts it through the gate.
func (m *Migrator) IncomingArrived() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur != nil && !m.cur.outgoing && m.cur.status() == StatusCompleted
}

// newJob records a new migration as the current one. Caller holds m.mu.
func (m *Migrator) newJob(outgoing bool, u URI) *job {
	ctx, cancel := context.WithCancel(m.life)
	j := &job{outgoing: outgoing, uri: u, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		start: time.Now(), st: StatusNone, emit: m.emitter(), log: m.log.With().Str("uri", u.String()).Logger(),
		params: m.params, xbzrle: m.caps["xbzrle"]}
	if outgoing {
		j.lim = newLimiter(m.params.MaxBandwidth)
		if !u.returnPath() {
			j.lim.setRate(0) // saving to a file: as fast as the disk takes it
		}
	}
	m.cur = j
	j.setStatus(StatusSetup)
	return j
}

// emitter returns the event function for a job: MIGRATION and
// MIGRATION_PASS go out only with the events capability, as in QEMU.
func (m *Migrator) emitter() func(string, map[string]any) {
	return func(name string, data map[string]any) {
		if m.cfg.Emit == nil {
			return
		}
		if m.events.Load() || (name != "MIGRATION" && name != "MIGRATION_PASS") {
			m.cfg.Emit(name, data)
		}
	}
}
