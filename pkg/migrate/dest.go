package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/migrate/stream"
)

// dest is the state of one incoming migration.
type dest struct {
	m  *Migrator
	j  *job
	vm VM
	rw io.ReadWriteCloser
	r  *stream.Reader
	w  *stream.Writer // the return path; nil when loading a file
	// decodeTime is how long the device state took to decode (downtime).
	decodeTime time.Duration
}

// runDest is the incoming engine: the goroutine that owns j.
func (m *Migrator) runDest(j *job, l *listener) {
	d := &dest{m: m, j: j, vm: m.cfg.VM}
	j.totalBytes = d.vm.RAM().Size()
	st, err := d.receive(j.ctx, l)
	if err != nil {
		d.fail(err)
	}
	if d.rw != nil {
		d.rw.Close()
	}
	if err == nil {
		d.arrive(st)
	}
}

// receive takes the stream up to and including the commit, and loads the
// guest. Nothing runs on this side until it returns successfully.
func (d *dest) receive(ctx context.Context, l *listener) (*machine.State, error) {
	defer l.close()
	rw, err := l.accept(ctx)
	if err != nil {
		return nil, err
	}
	d.rw = rw
	d.j.setConn(rw)
	d.j.setStatus(StatusActive)
	d.r = stream.NewReader(idleReader{rw}, stream.DefaultMaxPayload)
	d.j.mu.Lock()
	d.j.bytes = d.r.Bytes
	d.j.mu.Unlock()
	if d.j.uri.returnPath() {
		d.w = stream.NewWriter(rw)
		if err := d.w.WriteHeader(); err != nil {
			return nil, fmt.Errorf("answer the source: %w", err)
		}
	}
	if err := d.r.ReadHeader(); err != nil {
		return nil, err
	}
	if err := d.checkConfig(); err != nil {
		return nil, err
	}
	d.j.mu.Lock()
	d.j.setupTime = time.Since(d.j.start)
	d.j.mu.Unlock()
	st, err := d.load(ctx)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := d.vm.LoadState(ctx, st); err != nil {
		return nil, fmt.Errorf("load device state: %w", err)
	}
	// The other half of the downtime: the source logs its steps, this side
	// its own.
	d.j.log.Info().Dur("decode_ms", d.decodeTime).Dur("load_state_ms", time.Since(t0)).
		Msg("device state loaded; waiting for the source's commit")
	if d.w == nil {
		return st, nil // a saved file: its source already let go
	}
	if err := d.reply(stream.KindReady, nil); err != nil {
		return nil, err
	}
	sec, err := d.r.Next()
	switch {
	case err != nil:
		return nil, fmt.Errorf("the source did not commit (%w); the guest stays here, stopped", noEOF(err))
	case sec.Kind == stream.KindAbort:
		reason, _ := stream.ParseAbort(sec.Payload)
		return nil, fmt.Errorf("the source aborted before commit: %s", reason)
	case sec.Kind != stream.KindCommit:
		return nil, fmt.Errorf("the source sent %s where commit was expected", sec.Kind)
	}
	return st, nil
}

// noEOF names a clean end of stream for an operator.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("connection closed")
	}
	return err
}

// checkConfig reads the source's configuration and refuses a stream from a
// VM built differently, before any RAM is written.
func (d *dest) checkConfig() error {
	sec, err := d.r.Next()
	if err != nil {
		return fmt.Errorf("read the source's VM configuration: %w", noEOF(err))
	}
	if sec.Kind != stream.KindConfig {
		return fmt.Errorf("the stream starts with %s, not the VM configuration", sec.Kind)
	}
	var src machine.MigrationConfig
	if err := json.Unmarshal(sec.Payload, &src); err != nil {
		return fmt.Errorf("decode the source's VM configuration: %w", err)
	}
	if err := d.vm.MigrationConfig().Check(src); err != nil {
		return fmt.Errorf("the source's VM does not match this one: %w", err)
	}
	machine.WarmStateCodec() // not in the downtime
	return d.reply(stream.KindAccept, nil)
}

// load applies RAM sections until the end of the stream and returns the
// device state.
func (d *dest) load(ctx context.Context) (*machine.State, error) {
	var st *machine.State
	ram := d.vm.RAM()
	if d.m.written == nil {
		w := newDirtySet(ram)
		d.m.written = &w
	}
	written := *d.m.written
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sec, err := d.r.Next()
		if err != nil {
			return nil, fmt.Errorf("read the migration stream: %w", noEOF(err))
		}
		switch sec.Kind {
		case stream.KindPass:
			if _, err := stream.ParsePass(sec.Payload); err != nil {
				return nil, err
			}
			d.j.mu.Lock()
			d.j.c.syncs++
			d.j.mu.Unlock()
		case stream.KindRAM:
			if st != nil {
				return nil, fmt.Errorf("RAM after the device state in section %d", sec.Seq)
			}
			var zero, normal, delta, deltaBytes uint64
			err := stream.DecodeRAM(sec.Payload, func(e stream.RAMEntry) error {
				page, err := ram.Slice(e.GPA, pageSize)
				if err != nil {
					return fmt.Errorf("page %#x is outside this VM's RAM: %w", e.GPA, err)
				}
				switch {
				case e.Zero:
					zero++
					// A page no stream wrote is still zero (VM); reading it
					// to check would cost more than the rest of an idle
					// guest's migration.
					if written.has(e.GPA) && !stream.IsZeroPage(page) {
						clear(page)
					}
				case e.Delta:
					// The page holds what an earlier section of this
					// stream sent: every page comes whole (or zero) in
					// the first pass, before any delta.
					delta++
					deltaBytes += uint64(stream.RAMEntryHeader + stream.DeltaLenSize + len(e.Data))
					written.set(e.GPA)
					return stream.ApplyDelta(page, e.Data)
				default:
					normal++
					copy(page, e.Data)
					written.set(e.GPA)
				}
				return nil
			})
			if err != nil {
				return nil, sec.Locate(err)
			}
			d.j.mu.Lock()
			d.j.c.duplicate += zero
			d.j.c.normal += normal
			d.j.c.xbzrlePages += delta
			d.j.c.xbzrleBytes += deltaBytes
			d.j.mu.Unlock()
		case stream.KindDevice:
			if st != nil {
				return nil, fmt.Errorf("a second device state in section %d", sec.Seq)
			}
			t0 := time.Now()
			st = new(machine.State)
			if err := st.UnmarshalBinary(sec.Payload); err != nil {
				return nil, fmt.Errorf("decode device state: %w", err)
			}
			d.decodeTime = time.Since(t0)
		case stream.KindEnd:
			if st == nil {
				return nil, errors.New("the stream ended without the device state")
			}
			return st, nil
		case stream.KindAbort:
			reason, _ := stream.ParseAbort(sec.Payload)
			return nil, fmt.Errorf("the source gave up: %s", reason)
		default:
			return nil, fmt.Errorf("unexpected %s section %d in the migration stream", sec.Kind, sec.Seq)
		}
	}
}

func (d *dest) reply(k stream.Kind, payload []byte) error {
	if d.w == nil {
		return nil
	}
	if err := d.w.WriteSection(k, payload); err != nil {
		return fmt.Errorf("answer the source (%s): %w", k, err)
	}
	if err := d.w.Flush(); err != nil {
		return fmt.Errorf("answer the source (%s): %w", k, err)
	}
	return nil
}

// abort tells the source why this side gives up; best effort.
func (d *dest) abort(reason string) {
	if err := d.reply(stream.KindAbort, stream.AbortPayload(reason)); err != nil {
		d.j.log.Debug().Err(err).Msg("could not tell the source why")
	}
}

// fail ends an incoming migration that did not arrive. The VM never ran
// and stays in inmigrate; migrate-incoming may be tried again.
func (d *dest) fail(err error) {
	if d.j.wasCancelled() {
		d.j.finish(StatusCancelled, "migration cancelled")
		return
	}
	d.abort("load of migration failed: " + err.Error())
	d.j.log.Error().Err(err).Msg("incoming migration failed; the VM stays in inmigrate and has not run")
	d.j.finish(StatusFailed, "load of migration failed: "+err.Error())
}

// arrive decides what the arrived guest does: start through the gate when
// it was running on the source and autostart is on, else wait in the
// source's stopped state (disks stay inactive until cont, as in QEMU). A
// stop or cont that lands while this runs is honoured: the decision is
// re-checked under the migrator's lock, and acted on again if it changed.
func (d *dest) arrive(st *machine.State) {
	j := d.j
	desc := ""
	ran := st.RunState.Running()
	d.m.arrival.Lock()
	defer d.m.arrival.Unlock()
	for i := 0; ; i++ {
		want := ran && d.m.Autostart()
		running := d.vm.State().Running()
		switch {
		case want && !running && desc == "":
			ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), reactivateTimeout)
			err := d.vm.Resume(ctx, machine.CauseIncomingDone)
			cancel()
			if err != nil {
				desc = fmt.Sprintf("the guest arrived but was not started: %v; it stays paused and cont retries", err)
				j.log.Error().Err(err).Msg("incoming guest not started: a disk could not be activated")
				if d.vm.State() == machine.StateInMigrate {
					if serr := d.vm.EnterState(machine.StatePaused); serr != nil {
						j.log.Error().Err(serr).Msg("leave inmigrate")
					}
				}
			}
		case !want && running:
			if err := d.vm.Pause(j.ctx, machine.StatePaused); err != nil {
				j.log.Error().Err(err).Msg("stop the arrived guest")
			}
		case !want && d.vm.State() == machine.StateInMigrate:
			target := st.RunState
			if target.Running() || target == machine.StateFinishMigrate || !machine.CanTransition(machine.StateInMigrate, target) {
				target = machine.StatePaused
			}
			if err := d.vm.EnterState(target); err != nil {
				j.log.Error().Err(err).Msg("leave inmigrate")
			}
		}
		// A failed start is final until cont; and a flapping stop/cont
		// must not keep this loop going.
		if d.m.settleArrival(d.vm.State().Running(), ran, desc != "" || i >= 3) {
			break
		}
	}
	// The run state has changed before the event that announces completion.
	j.finish(StatusCompleted, desc)
}

// destIdleTimeout bounds how long the destination waits for the next byte
// from the source. The source is legitimately silent while it inactivates
// its disks (x-inactivate-timeout, 10 s by default) and while it waits for
// ready; a minute of silence means the source or the link is gone, and the
// destination fails (and can be retried) instead of waiting forever.
const destIdleTimeout = time.Minute

// idleReader gives every read on a network connection a deadline.
type idleReader struct{ r io.Reader }

func (ir idleReader) Read(p []byte) (int, error) {
	c, ok := ir.r.(net.Conn)
	if !ok {
		return ir.r.Read(p)
	}
	if err := c.SetReadDeadline(time.Now().Add(destIdleTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("nothing from the source for %v: %w", destIdleTimeout, err)
	}
	return n, err
}
