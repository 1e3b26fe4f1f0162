package migrate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/vmmd/vmmd/pkg/machine"
)

// modelChecks bounds the model test in `make test`; -rapid.checks (or
// RAPID_CHECKS) overrides it for long runs.
const modelChecks = 20

// TestModel is a property-based state-machine test (issue 8 item 3) of the
// run states, the block reactivation gate and the migration status machine.
// Random sequences of operator commands (stop, cont, migrate, migrate_cancel),
// storage faults (flush failure, storage down, storage hang), destination
// load failures and waits run against vmmd processes that share storage
// through image locks. After every step it checks the promises of
// DESIGN.md; after every migration it checks where the guest ended up
// against what the operator asked for.
func TestModel(t *testing.T) {
	boundRapidChecks(t, modelChecks)
	rapid.Check(t, func(rt *rapid.T) {
		m := newModel(rt)
		defer m.close()
		rt.Repeat(map[string]func(*rapid.T){
			"stop":         m.stop,
			"cont":         m.cont,
			"migrate":      m.migrate,
			"cancel":       m.cancel,
			"flushFailure": m.flushFailure,
			"storageDown":  m.storageDown,
			"storageHang":  m.storageHang,
			"loadFailure":  m.loadFailure,
			"sleep":        m.sleep,
			"wait":         m.wait,
			"":             m.check,
		})
		// Every migration still in flight must end, and end consistently.
		if m.fl != nil {
			m.wait(rt)
		}
		m.check(rt)
	})
}

// boundRapidChecks sets rapid's number of checks to n unless the command
// line or the environment asked for a number.
func boundRapidChecks(t *testing.T, n int) {
	t.Helper()
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	f := flag.Lookup("rapid.checks")
	if set || f == nil {
		return
	}
	old := f.Value.String()
	if err := flag.Set("rapid.checks", strconv.Itoa(n)); err != nil {
		t.Fatalf("bound rapid checks: %v", err)
	}
	t.Cleanup(func() { _ = flag.Set("rapid.checks", old) })
}

// model is the world of one test case and what the test knows about it.
type model struct {
	dir    string
	locks  *imageLocks
	sides  []*modelSide // every side ever started, retired ones included
	nextID int
	nsock  int
	fl     *flight // the migration in flight, until a wait collects it
}

// flight is one outgoing migration and what happened around it.
type flight struct {
	src, dst *modelSide // dst is nil when nobody listens at the URI
	uri      string
	// intent: whether the guest should run on the source at switchover,
	// following the operator's stop and cont during pre-copy. The guest
	// runs after the migration where intent says, and nowhere else.
	intent bool
	// unsure: an operator command on the source straddled a phase change
	// (or came after the commit), so its effect on intent is unknown.
	unsure bool
	srcOps bool // any operator command on the source
	dstOps bool // any operator command on the destination
	// otherOps: a command on a third side, which may take image locks the
	// migration's sides need.
	otherOps  bool
	faults    bool // a fault on either side changed during the flight
	cancelled bool
	// From the faults when the migration started:
	expectFail   string // why it must fail; "" when it must complete
	srcStorageOK bool   // the source can take every disk back
	dstStorageOK bool   // the destination can activate every disk
	dstAutostart bool   // the destination starts a guest that arrives running
}

func newModel(t *rapid.T) *model {
	dir, err := os.MkdirTemp("", "mdl")
	if err != nil {
		t.Fatalf("socket directory: %v", err)
	}
	m := &model{dir: dir, locks: newImageLocks()}
	state := rapid.SampledFrom([]machine.RunState{machine.StateRunning, machine.StatePaused}).Draw(t, "initial state")
	m.start(t, state, true)
	return m
}

func (m *model) close() {
	for _, s := range m.sides {
		s.close()
	}
	os.RemoveAll(m.dir)
}

func (m *model) start(t *rapid.T, state machine.RunState, active bool) *modelSide {
	m.nextID++
	s, err := newModelSide(m.nextID, m.locks, state, active)
	if err != nil {
		t.Fatalf("%v", err)
	}
	m.sides = append(m.sides, s)
	t.Logf("start %s in %s", s, state)
	return s
}

func (m *model) live() []*modelSide {
	var out []*modelSide
	for _, s := range m.sides {
		if !s.retired {
			out = append(out, s)
		}
	}
	return out
}

// pick draws a live side by index, so rapid's log and shrinking stay short.
func (m *model) pick(t *rapid.T, label string) *modelSide {
	live := m.live()
	s := live[rapid.IntRange(0, len(live)-1).Draw(t, label)]
	t.Logf("%s: %s", label, s)
	return s
}

func (m *model) newURI() string {
	m.nsock++
	return "unix:" + filepath.Join(m.dir, fmt.Sprintf("m%d.sock", m.nsock))
}

// retire ends a side's process, checking that it never broke the invariant.
func (m *model) retire(t *rapid.T, s *modelSide) {
	s.close()
	if n := s.vm.violations.Load(); n != 0 {
		t.Fatalf("%s started vCPUs %d times with an inactive disk", s, n)
	}
	t.Logf("retire %s", s)
}

// phase names where a migration is, for judging when a command landed.
func phase(s Status) string {
	switch s {
	case StatusSetup, StatusActive:
		return "pre-copy"
	case StatusFailed, StatusCancelled:
		return "ended before commit"
	}
	return ""
}

// noteOp records an operator command on side s for the flight in progress.
// apply changes the intent when the command landed within one known phase.
func (m *model) noteOp(s *modelSide, before, after observation, apply func(*flight)) {
	fl := m.fl
	if fl == nil {
		return
	}
	switch s {
	case fl.src:
		fl.srcOps = true
		if p := phase(before.status); p != "" && p == phase(after.status) {
			apply(fl)
		} else {
			fl.unsure = true
		}
	case fl.dst:
		fl.dstOps = true
	default:
		fl.otherOps = true
	}
}

// refused checks that a command that returned an error changed nothing on a
// side where nothing else was going on.
func (m *model) refused(t *rapid.T, what string, s *modelSide, before, after observation, err error) {
	t.Logf("%s on %s (%s, %s) refused: %v", what, s, before.state, before.status, err)
	if before.quiet() && after.quiet() && (before.state != after.state || before.status != after.status) {
		t.Fatalf("refused %s changed %s: run state %s -> %s, migration %s -> %s",
			what, s, before.state, after.state, before.status, after.status)
	}
}

// stop is QMP stop as the monitor does it: in inmigrate it only clears
// autostart, otherwise it pauses the guest.
func (m *model) stop(t *rapid.T) {
	s := m.pick(t, "side")
	before := observe(s)
	inmigrate := before.state == machine.StateInMigrate
	var err error
	if inmigrate {
		s.mig.SetAutostart(false)
	} else {
		err = s.vm.Pause(context.Background(), machine.StatePaused)
	}
	after := observe(s)
	if err != nil {
		m.refused(t, "stop", s, before, after, err)
		m.noteOp(s, before, after, func(*flight) {})
		return
	}
	binding := inmigrate || after.state == machine.StatePaused
	if binding {
		s.stopped = true
	}
	t.Logf("stop %s: %s -> %s (migration %s -> %s), binding=%v", s, before.state, after.state, before.status, after.status, binding)
	m.noteOp(s, before, after, func(fl *flight) {
		if binding {
			fl.intent = false
		}
	})
}

// cont is QMP cont as the monitor does it: in inmigrate it only sets
// autostart, otherwise it resumes through the gate.
func (m *model) cont(t *rapid.T) {
	s := m.pick(t, "side")
	before := observe(s)
	var err error
	if before.state == machine.StateInMigrate {
		s.mig.SetAutostart(true)
	} else {
		err = s.vm.Resume(context.Background(), machine.CauseCont)
	}
	after := observe(s)
	if err != nil {
		m.refused(t, "cont", s, before, after, err)
		if before.state == machine.StateFinishMigrate && !errors.Is(err, machine.ErrMigrationNotFinal) {
			t.Fatalf("cont in finish-migrate: %v, want %v", err, machine.ErrMigrationNotFinal)
		}
		// A refused cont may still have taken some image locks.
		m.noteOp(s, before, after, func(*flight) {})
		return
	}
	s.stopped = false
	t.Logf("cont %s: %s -> %s (migration %s -> %s)", s, before.state, after.state, before.status, after.status)
	m.noteOp(s, before, after, func(fl *flight) { fl.intent = true })
}

// cancel is migrate_cancel: on the migration in flight if there is one,
// else on any side, where it must change nothing.
func (m *model) cancel(t *rapid.T) {
	if m.fl != nil {
		t.Logf("migrate_cancel on %s (%s)", m.fl.src, m.fl.src.mig.Info().Status)
		m.fl.src.mig.Cancel()
		m.fl.cancelled = true
		return
	}
	s := m.pick(t, "side")
	before := observe(s)
	s.mig.Cancel()
	after := observe(s)
	if before.quiet() && before != after {
		t.Fatalf("migrate_cancel with nothing in flight changed %s: %+v -> %+v", s, before, after)
	}
}

// migrate starts a migration from a side to a fresh destination, to a
// destination that failed before (migrate-incoming again), or to an address
// where nobody listens. One migration is in flight at a time.
func (m *model) migrate(t *rapid.T) {
	if m.fl != nil {
		t.Skip("a migration is in flight")
	}
	src := m.pick(t, "source")
	kind := rapid.SampledFrom([]string{"fresh", "retry", "nowhere"}).Draw(t, "destination")
	dfault := rapid.SampledFrom([]string{"none", "load", "down"}).Draw(t, "destination fault")
	slow := rapid.Bool().Draw(t, "slow")
	ctx := context.Background()
	before := observe(src)
	if before.state != machine.StateRunning && before.state != machine.StatePaused {
		err := src.mig.Migrate(ctx, "unix:"+filepath.Join(m.dir, "nobody.sock"))
		if err == nil {
			t.Fatalf("migrate from %s in %s was accepted", src, before.state)
		}
		want := map[machine.RunState]error{machine.StateInMigrate: ErrWaitingIncoming, machine.StatePostMigrate: ErrPostMigrate}[before.state]
		if before.status.inProgress() {
			want = ErrInProgress // an incoming migration still waits here
		}
		if want != nil && !errors.Is(err, want) {
			t.Fatalf("migrate from %s: %v, want %v", before.state, err, want)
		}
		m.refused(t, "migrate", src, before, observe(src), err)
		return
	}
	uri := m.newURI()
	var dst *modelSide
	if kind == "retry" {
		dst = m.retryDestination(t, src, uri)
		if dst == nil {
			kind = "fresh"
		}
	}
	switch kind {
	case "fresh":
		m.retireDeadWeight(t, src)
		dst = m.start(t, machine.StateInMigrate, false)
		if err := dst.mig.Incoming(ctx, uri); err != nil {
			t.Fatalf("migrate-incoming on %s: %v", dst, err)
		}
	case "nowhere":
		uri = "unix:" + filepath.Join(m.dir, "nowhere.sock")
	}
	fl := &flight{src: src, dst: dst, uri: uri, intent: before.state == machine.StateRunning, srcStorageOK: true, dstStorageOK: true}
	if dst != nil {
		fl.dstAutostart = dst.mig.Autostart()
		dst.setLoadFailure(dfault == "load")
		for _, d := range dst.drives {
			d.set(func(d *fakeDrive) { d.failActivate = nil })
		}
		if dfault == "down" {
			dst.drives[1].set(func(d *fakeDrive) { d.failActivate = errors.New("connect: connection refused") })
			fl.dstStorageOK = false
		}
		if dfault == "load" {
			fl.expectFail = "the destination cannot load the device state"
		}
	} else {
		fl.expectFail = "nobody listens"
	}
	for _, d := range src.drives {
		f := d.faults()
		switch {
		case f.hangs:
			fl.expectFail = "storage hangs on " + d.name
		case f.active && f.flushFails:
			fl.expectFail = "flush fails on " + d.name
		}
		if f.down {
			fl.srcStorageOK = false
		}
	}
	bw := uint64(0)
	if slow {
		bw = modelSlowBandwidth
	}
	if err := src.mig.SetParameters(func(p *Parameters) { p.MaxBandwidth = bw }); err != nil {
		t.Fatalf("set max-bandwidth: %v", err)
	}
	if err := src.mig.Migrate(ctx, uri); err != nil {
		t.Fatalf("migrate from %s in %s refused: %v", src, before.state, err)
	}
	m.fl = fl
	t.Logf("migrate %s (%s) -> %v at %s; must fail: %q", src, before.state, dst, uri, fl.expectFail)
}

// retryDestination finds a side still waiting in inmigrate whose incoming
// migration failed and starts migrate-incoming on it again. One whose
// incoming migration is still in progress must refuse.
func (m *model) retryDestination(t *rapid.T, src *modelSide, uri string) *modelSide {
	for _, s := range m.live() {
		if s == src || s.vm.State() != machine.StateInMigrate {
			continue
		}
		before := observe(s)
		err := s.mig.Incoming(context.Background(), uri)
		if before.status.inProgress() {
			if !errors.Is(err, ErrIncomingStarted) {
				t.Fatalf("migrate-incoming on %s while one waits: %v, want %v", s, err, ErrIncomingStarted)
			}
			m.refused(t, "migrate-incoming", s, before, observe(s), err)
			continue
		}
		if err != nil {
			t.Fatalf("migrate-incoming again on %s (%s): %v", s, before.status, err)
		}
		return s
	}
	return nil
}

// retireDeadWeight ends the processes an operator would clean up before
// starting a new destination: sides that do not run and hold no disk
// (failed destinations, postmigrate sources, copies that arrived stopped).
func (m *model) retireDeadWeight(t *rapid.T, src *modelSide) {
	for _, s := range m.live() {
		if s != src && s.vm.State() != machine.StateRunning && s.allInactive() {
			m.retire(t, s)
		}
	}
}

func (m *model) setFault(t *rapid.T, what string, f func(d *fakeDrive, on bool)) {
	s := m.pick(t, "side")
	i := rapid.IntRange(0, modelDrives-1).Draw(t, "drive")
	on := rapid.Bool().Draw(t, "on")
	s.drives[i].set(func(d *fakeDrive) { f(d, on) })
	if fl := m.fl; fl != nil && (s == fl.src || s == fl.dst) {
		fl.faults = true
	}
	t.Logf("%s on %s %s: %v", what, s, s.drives[i].name, on)
}

func (m *model) flushFailure(t *rapid.T) {
	m.setFault(t, "flush failure", func(d *fakeDrive, on bool) {
		d.failInactivate = nil
		if on {
			d.failInactivate = errors.New("flush: input/output error")
		}
	})
}

func (m *model) storageDown(t *rapid.T) {
	m.setFault(t, "storage down", func(d *fakeDrive, on bool) {
		d.failActivate = nil
		if on {
			d.failActivate = errors.New("connect: connection refused")
		}
	})
}

func (m *model) storageHang(t *rapid.T) {
	m.setFault(t, "storage hang", func(d *fakeDrive, on bool) { d.hang = on })
}

func (m *model) loadFailure(t *rapid.T) {
	s := m.pick(t, "side")
	on := rapid.Bool().Draw(t, "on")
	s.setLoadFailure(on)
	if fl := m.fl; fl != nil && s == fl.dst {
		fl.faults = true
	}
	t.Logf("load failure on %s: %v", s, on)
}

// sleep lets the engines move on, so commands land in every phase.
func (m *model) sleep(t *rapid.T) {
	time.Sleep(time.Duration(rapid.IntRange(0, 30).Draw(t, "ms")) * time.Millisecond)
}

func waitJob(m *Migrator, d time.Duration) (Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := m.Wait(ctx)
	return st, err == nil
}

// wait collects the migration in flight and checks where the guest is.
func (m *model) wait(t *rapid.T) {
	fl := m.fl
	if fl == nil {
		t.Skip("no migration in flight")
	}
	m.fl = nil
	s, ok := waitJob(fl.src.mig, 20*time.Second)
	if !ok {
		t.Fatalf("migration from %s did not end in 20 s: %+v", fl.src, fl.src.mig.Info())
	}
	src := observe(fl.src)
	t.Logf("migration from %s ended %s %q; source %s", fl.src, s, src.desc, src.state)
	if !s.Finished() {
		t.Fatalf("migration from %s ended in %s, not a final status (%q)", fl.src, s, src.desc)
	}
	if s != src.status {
		t.Fatalf("Wait says %s, query-migrate %s", s, src.status)
	}
	if fl.dst != nil {
		m.waitDestination(t, fl, s)
	}
	if s == StatusCompleted {
		m.checkCompleted(t, fl, src)
	} else {
		m.checkFailed(t, fl, src)
	}
	if fl.srcOps || fl.dstOps || fl.otherOps || fl.faults {
		return
	}
	if fl.expectFail != "" && s == StatusCompleted {
		t.Fatalf("migration from %s completed although %s", fl.src, fl.expectFail)
	}
	if fl.expectFail == "" && !fl.cancelled && s != StatusCompleted {
		t.Fatalf("migration from %s %s (%q) with no fault", fl.src, s, src.desc)
	}
}

func (m *model) waitDestination(t *rapid.T, fl *flight, s Status) {
	if s == StatusCompleted {
		d, ok := waitJob(fl.dst.mig, 20*time.Second)
		if !ok || d != StatusCompleted {
			t.Fatalf("source completed, destination %s %+v", d, fl.dst.mig.Info())
		}
		return
	}
	// The source may have given up before it connected (cancelled at once):
	// the destination then still waits (setup), and that is fine. One that
	// was connected fails within milliseconds of the source closing.
	d, ok := waitJob(fl.dst.mig, 300*time.Millisecond)
	if !ok && d != StatusSetup {
		if d, ok = waitJob(fl.dst.mig, 20*time.Second); !ok {
			t.Fatalf("source %s, destination still %s after 20 s", s, d)
		}
	}
	if d == StatusCompleted {
		t.Fatalf("source %s, yet the destination completed", s)
	}
	dst := observe(fl.dst)
	if dst.state != machine.StateInMigrate || !fl.dst.allInactive() {
		t.Fatalf("destination %s of a migration that %s is %s (disks inactive: %v), want inmigrate with inactive disks",
			fl.dst, s, dst.state, fl.dst.allInactive())
	}
}

func (m *model) checkCompleted(t *rapid.T, fl *flight, src observation) {
	if fl.dst == nil {
		t.Fatalf("migration to nowhere completed")
	}
	if fl.unsure {
		return
	}
	if src.state != machine.StatePostMigrate || !fl.src.allInactive() {
		t.Fatalf("completed source %s is %s (disks inactive: %v), want postmigrate with inactive disks",
			fl.src, src.state, fl.src.allInactive())
	}
	if fl.dstOps || fl.otherOps {
		return
	}
	dst := observe(fl.dst)
	running := dst.state == machine.StateRunning
	if running && !fl.intent {
		t.Fatalf("%s runs the guest although it was stopped on %s at switchover", fl.dst, fl.src)
	}
	if !running && dst.state != machine.StatePaused {
		t.Fatalf("arrived guest on %s is %s", fl.dst, dst.state)
	}
	if fl.faults {
		return
	}
	if want := fl.intent && fl.dstAutostart && fl.dstStorageOK; running != want {
		t.Fatalf("arrived guest on %s is %s (%q); the source was running at switchover: %v, autostart: %v, destination storage up: %v",
			fl.dst, dst.state, dst.desc, fl.intent, fl.dstAutostart, fl.dstStorageOK)
	}
	if fl.intent && fl.dstAutostart && !fl.dstStorageOK && !strings.Contains(dst.desc, "not started") {
		t.Fatalf("destination %s did not say why the guest did not start: %q", fl.dst, dst.desc)
	}
}

func (m *model) checkFailed(t *rapid.T, fl *flight, src observation) {
	if src.state != machine.StateRunning && src.state != machine.StatePaused {
		t.Fatalf("source %s of a migration that did not complete is %s", fl.src, src.state)
	}
	if fl.unsure || fl.otherOps {
		return
	}
	running := src.state == machine.StateRunning
	if running && !fl.intent {
		t.Fatalf("%s resumed the guest after the migration %s although it was stopped at switchover", fl.src, src.status)
	}
	if !running && fl.intent && fl.srcStorageOK && !fl.faults {
		t.Fatalf("%s stays %s after the migration %s (%q) although the guest was running and its storage is up",
			fl.src, src.state, src.status, src.desc)
	}
}

// check is the invariant, run after every step.
func (m *model) check(t *rapid.T) {
	live := m.live()
	views, holders := snapshot(live, m.locks)
	var running []string
	for _, v := range views {
		if v.state == machine.StateRunning {
			running = append(running, v.side.String())
			for i, a := range v.active {
				if !a {
					t.Fatalf("%s runs with %s inactive", v.side, v.side.drives[i].name)
				}
			}
			if v.mayBeInactive {
				t.Fatalf("%s runs while its gate says a disk may be inactive", v.side)
			}
			if v.side.stopped {
				t.Fatalf("%s runs although the operator stopped it and did not cont", v.side)
			}
		}
	}
	if len(running) > 1 {
		t.Fatalf("the guest runs on %v at once", running)
	}
	for i := range modelDrives {
		var on []*modelSide
		for _, v := range views {
			if v.active[i] {
				on = append(on, v.side)
			}
		}
		name := fmt.Sprintf("disk%d", i)
		if len(on) > 1 {
			t.Fatalf("%s is active on %v at once", name, on)
		}
		if len(on) == 1 && holders[name] != on[0].id {
			t.Fatalf("%s is active on %s, but the image lock is held by vmmd%d", name, on[0], holders[name])
		}
	}
	for _, s := range m.sides {
		if n := s.vm.violations.Load(); n != 0 {
			t.Fatalf("%s started vCPUs %d times with an inactive disk", s, n)
		}
		if err := s.events.check(); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
