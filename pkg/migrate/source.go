package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/migrate/stream"
)

const pageSize = stream.PageSize

// reactivateTimeout bounds the source's attempt to take its disks back
// after a failure: a storage server that is still down must not keep the
// migration from reaching a final status.
const reactivateTimeout = 15 * time.Second

// source is the state of one outgoing migration.
type source struct {
	m   *Migrator
	j   *job
	vm  VM
	w   *stream.Writer
	rw  io.ReadWriteCloser
	rp  *returnPath // nil when saving to a file
	was machine.RunState
	// stopped: the guest was stopped for switchover by this migration.
	stopped bool
	// committed: commit was sent; from here on the source never resumes.
	committed bool
	pending   dirtySet
	// cache holds the pages that may go as deltas; nil without xbzrle.
	cache *pageCache
}

// runSource is the outgoing engine: the goroutine that owns j.
func (m *Migrator) runSource(j *job) {
	s := &source{m: m, j: j, vm: m.cfg.VM, was: m.cfg.VM.State()}
	j.totalBytes = s.vm.RAM().Size()
	j.log.Info().Str("state", string(s.was)).Msg("migration started")
	err := s.run(j.ctx)
	if err == nil {
		s.j.finish(StatusCompleted, "")
		return
	}
	s.fail(err)
}

func (s *source) run(ctx context.Context) error {
	j := s.j
	rw, err := dial(ctx, j.uri)
	if err != nil {
		return err
	}
	s.rw = rw
	j.setConn(rw)
	defer func() {
		rw.Close()
		if s.rp != nil {
			s.rp.wait()
		}
	}()
	s.w = stream.NewWriter(limitedWriter{ctx: ctx, w: rw, l: j.lim, stall: ms(j.params.HandoverTimeout)})
	j.mu.Lock()
	j.bytes = s.w.Bytes
	j.mu.Unlock()
	if j.uri.returnPath() {
		s.rp = startReturnPath(rw)
	}
	if err := s.handshake(ctx); err != nil {
		return err
	}
	j.mu.Lock()
	j.setupTime = time.Since(j.start)
	j.mu.Unlock()
	if err := s.vm.StartDirtyLog(); err != nil {
		return fmt.Errorf("start dirty-page tracking: %w", err)
	}
	defer func() {
		if err := s.vm.StopDirtyLog(); err != nil {
			j.log.Warn().Err(err).Msg("stop dirty-page tracking")
		}
	}()
	s.pending = newDirtySet(s.vm.RAM())
	j.setStatus(StatusActive)
	if err := s.precopy(ctx); err != nil {
		return err
	}
	return s.switchover(ctx)
}

// handshake sends the header and the configuration, and on a socket waits
// for the destination to accept it: a destination built differently
// refuses here, before any RAM moves.
func (s *source) handshake(ctx context.Context) error {
	cfg, err := json.Marshal(s.vm.MigrationConfig())
	if err != nil {
		return fmt.Errorf("encode the VM configuration: %w", err)
	}
	machine.WarmStateCodec() // not in the downtime
	if err := s.w.WriteHeader(); err != nil {
		return fmt.Errorf("send stream header: %w", err)
	}
	if err := s.w.WriteSection(stream.KindConfig, cfg); err != nil {
		return fmt.Errorf("send VM configuration: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("send VM configuration: %w", err)
	}
	if s.rp == nil {
		return nil
	}
	return s.rp.expect(ctx, stream.KindAccept, ms(s.j.params.HandoverTimeout), "accept the VM configuration")
}

// precopy sends all of RAM, then the pages dirtied meanwhile, pass after
// pass, until what is left can be sent within downtime-limit (or the guest
// is not running, so nothing more will be dirtied).
//
// With page deltas (xbzrle), a guest that keeps rewriting pages gets two
// more passes before switchover even when the estimate already fits: the
// second pass fills the cache with the pages being rewritten, the third
// sends them as deltas and measures what a delta costs. The last pass,
// which is downtime, then sends deltas too instead of whole pages.
func (s *source) precopy(ctx context.Context) error {
	s.pending.all()
	if s.j.xbzrle {
		s.cache = newPageCache(s.vm.RAM(), s.j.params.XBZRLECacheSize)
	}
	minPasses := 1
	for pass := 1; ; pass++ {
		if err := s.checkAbort(); err != nil {
			return err
		}
		ps, err := s.sendPass(ctx, uint32(pass))
		if err != nil {
			return err
		}
		dirty, err := s.sync()
		if err != nil {
			return err
		}
		if pass == 1 && s.cache != nil && dirty >= minDeltaPages {
			minPasses = 3
		}
		expected := expectedDowntime(dirty, ps)
		bw := bandwidth(ps.bytes, ps.elapsed)
		s.j.mu.Lock()
		s.j.c.remaining = dirty * pageSize
		s.j.c.expectedDowntime = expected
		s.j.c.mbps = bw * 8 / 1e6
		if ps.elapsed > 0 {
			s.j.c.dirtyRate = uint64(float64(dirty) / ps.elapsed.Seconds())
		}
		s.j.mu.Unlock()
		if !s.vm.State().Running() {
			return nil
		}
		// downtime-limit is read afresh each pass: orchestrators (libvirt's
		// migrate-setmaxdowntime) raise it while a migration runs.
		if pass >= minPasses && expected <= ms(s.m.Parameters().DowntimeLimit) {
			return nil
		}
	}
}

// minDeltaPages is the dirty set after the first pass below which the
// extra passes for deltas are not worth their time.
const minDeltaPages = 256

// expectedDowntime predicts how long sending dirty pages takes, from what
// the last pass spent per page it sent with data (whole or as a delta);
// zero and unchanged pages cost almost nothing and would flatter it.
func expectedDowntime(dirty uint64, ps passStats) time.Duration {
	if ps.data == 0 {
		bw := bandwidth(ps.bytes, ps.elapsed)
		return time.Duration(float64(dirty*pageSize) / bw * float64(time.Second))
	}
	return time.Duration(float64(ps.elapsed) / float64(ps.data) * float64(dirty))
}

// bandwidth is the measured rate of a pass, with a floor so that a pass
// too short to measure does not predict an infinite downtime.
func bandwidth(n uint64, d time.Duration) float64 {
	const floor = 1 << 20 // bytes per second
	if d <= 0 {
		return 1 << 40
	}
	return max(float64(n)/d.Seconds(), floor)
}

// sync fetches the dirty bitmaps into the pending set and counts them.
func (s *source) sync() (uint64, error) {
	if err := s.vm.SyncDirty(s.pending.or); err != nil {
		return 0, fmt.Errorf("read dirty-page log: %w", err)
	}
	s.j.mu.Lock()
	s.j.c.syncs++
	n := s.j.c.syncs
	s.j.mu.Unlock()
	s.j.emit("MIGRATION_PASS", map[string]any{"pass": n})
	return s.pending.count(), nil
}

// switchover stops the guest, inactivates its disks, sends what is left
// and hands over. Everything before the commit is undone by fail.
func (s *source) switchover(ctx context.Context) error {
	j := s.j
	j.mu.Lock()
	j.stoppedAt = time.Now()
	j.c.precopyBytes = s.w.Bytes()
	j.mu.Unlock()
	j.lim.disable() // the guest waits for every byte from now on
	// Where the downtime goes, for query-migrate and the log: operators
	// tuning downtime-limit (and we) need to know which step to blame.
	var took DowntimeSteps
	last := time.Now()
	mark := func(into *float64) {
		now := time.Now()
		*into = float64(now.Sub(last).Microseconds()) / 1000
		last = now
	}
	if err := s.stopGuest(ctx); err != nil {
		return err
	}
	mark(&took.Stop)
	j.setStatus(StatusDevice)
	if err := s.inactivate(ctx); err != nil {
		return err
	}
	mark(&took.Inactivate)
	if _, err := s.sync(); err != nil {
		return err
	}
	if _, err := s.sendPass(ctx, 0); err != nil {
		return err
	}
	mark(&took.LastPages)
	st, err := s.vm.SaveState(ctx, s.was)
	if err != nil {
		return fmt.Errorf("save device state: %w", err)
	}
	dev, err := st.MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode device state: %w", err)
	}
	if err := s.w.WriteSection(stream.KindDevice, dev); err != nil {
		return fmt.Errorf("send device state: %w", err)
	}
	if err := s.w.WriteSection(stream.KindEnd, nil); err != nil {
		return fmt.Errorf("send end of stream: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("send device state: %w", err)
	}
	mark(&took.DeviceState)
	if s.rp == nil {
		if !j.beginCommit() {
			return errors.New("migration cancelled")
		}
		if f, ok := s.rw.(*os.File); ok {
			if err := f.Sync(); err != nil {
				return fmt.Errorf("sync migration file: %w", err)
			}
		}
	} else {
		if err := s.rp.expect(ctx, stream.KindReady, ms(j.params.HandoverTimeout), "load the guest"); err != nil {
			return err
		}
		mark(&took.DestinationLoad)
		// From here migrate_cancel is too late (as in QEMU after
		// completion): the commit may reach the destination.
		if !j.beginCommit() {
			return errors.New("migration cancelled")
		}
		if err := s.w.WriteSection(stream.KindCommit, nil); err != nil {
			return fmt.Errorf("send commit: %w", err)
		}
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("send commit: %w", err)
		}
	}
	mark(&took.Commit)
	// Past this point the destination may run the guest: never resume here.
	s.committed = true
	j.mu.Lock()
	j.steps = &took
	j.downtime = time.Since(j.stoppedAt)
	j.c.downtimeBytes = s.w.Bytes() - j.c.precopyBytes
	j.c.remaining = 0
	j.mu.Unlock()
	if err := s.vm.EnterState(machine.StatePostMigrate); err != nil {
		j.log.Error().Err(err).Msg("enter postmigrate after commit")
	}
	j.log.Info().Dur("downtime", j.downtime).Interface("downtime_steps", took).
		Msg("migration committed; this side stays in postmigrate")
	return nil
}

// stopGuest stops the vCPUs and drains disk I/O (finish-migrate), in one
// step with reading the state the guest was in: that is what decides
// whether it resumes after a failure and autostarts on the destination.
// A cancel must not interrupt the stop half way, so it has its own bound.
func (s *source) stopGuest(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reactivateTimeout)
	defer cancel()
	was, err := s.vm.StopForMigration(pctx)
	if err != nil {
		return fmt.Errorf("stop the guest for switchover: %w", err)
	}
	s.was = was
	s.stopped = true
	return nil
}

// inactivate hands the disks over, bounded by x-inactivate-timeout so a
// hung storage server fails the migration instead of hanging it. The gate
// marks "may be inactive" before it touches the first disk.
func (s *source) inactivate(ctx context.Context) error {
	limit := ms(s.j.params.InactivateTimeout)
	ictx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := s.vm.Gate().InactivateAll(ictx)
	if err == nil {
		return nil
	}
	if errors.Is(ictx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("inactivate disks: storage did not answer within %v (x-inactivate-timeout): %w", limit, err)
	}
	return fmt.Errorf("inactivate disks: %w", err)
}

// checkAbort returns the destination's refusal if one arrived.
func (s *source) checkAbort() error {
	if s.rp == nil {
		return nil
	}
	return s.rp.poll()
}

// fail ends a migration that did not commit: the guest gets its disks back
// and, if it was running, resumes through the gate. If a disk cannot be
// reactivated, the guest stays paused with the reason, and cont retries.
func (s *source) fail(err error) {
	j := s.j
	cancelled := j.wasCancelled()
	final := StatusFailed
	if cancelled {
		final = StatusCancelled
		err = errors.New("migration cancelled")
	}
	if s.rw != nil {
		s.rw.Close()
	}
	desc := err.Error()
	j.log.Warn().Err(err).Bool("cancelled", cancelled).Msg("migration did not complete")
	if s.committed {
		// Not reachable today (nothing fails after commit), kept so that a
		// future step after the commit can never resume the source.
		j.finish(final, desc)
		return
	}
	if s.stopped {
		if rerr := s.recover(); rerr != nil {
			desc += "; " + rerr.Error()
		}
	}
	j.finish(final, desc)
}

// recover undoes switchover on the source. Resume asks the gate, so a guest
// whose disks cannot all come back does not run.
func (s *source) recover() error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.j.ctx), reactivateTimeout)
	defer cancel()
	cause := machine.CauseMigrationFailed
	if s.j.wasCancelled() {
		cause = machine.CauseMigrationCancelled
	}
	if s.was.Running() {
		err := s.vm.Resume(ctx, cause)
		if err == nil {
			return nil
		}
		if serr := s.vm.EnterState(machine.StatePaused); serr != nil {
			s.j.log.Error().Err(serr).Msg("leave finish-migrate")
		}
		return fmt.Errorf("the guest stays paused until its disks are back (cont retries): %w", err)
	}
	err := s.vm.Gate().ReactivateAll(ctx)
	back := s.was
	if !machine.CanTransition(machine.StateFinishMigrate, back) {
		back = machine.StatePaused
	}
	if serr := s.vm.EnterState(back); serr != nil {
		s.j.log.Error().Err(serr).Msg("restore the run state after a failed migration")
	}
	if err != nil {
		return fmt.Errorf("some disks stay inactive until cont: %w", err)
	}
	return nil
}
