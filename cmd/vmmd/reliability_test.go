package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// The fault matrix (issue 8): every fault at every phase of a migration
// with three drives on one nbdkit server, the guest writing records and
// dirtying memory. Each cell states what both sides must end in; every cell
// also checks the invariant counter, the records, the memory checker and
// that surviving daemons answer QMP. VMMD_RELIABILITY_REPORT=PATH writes the
// table and its results as Markdown (make reliability: docs/RELIABILITY.md).

type mphase string
type mfault string

const (
	phSetup       mphase = "setup"
	phFirstPass   mphase = "first pass"
	phDirtyPass   mphase = "dirty passes"
	phBeforeInact mphase = "just before inactivation"
	phDuringInact mphase = "during inactivation (2nd of 3 drives)"
	phBeforeReady mphase = "after inactivation, before ready"
	phBeforeCommi mphase = "after ready, before commit"
	phAfterCommit mphase = "after commit"

	fFlush    mfault = "storage flush error"
	fHang     mfault = "storage hang past the timeout"
	fKilled   mfault = "storage killed"
	fDestKill mfault = "destination killed"
	fCut      mfault = "connection cut"
	fCancel   mfault = "migrate_cancel"
	fQuit     mfault = "source quit"
)

func matrixPhases() []mphase {
	return []mphase{phSetup, phFirstPass, phDirtyPass, phBeforeInact, phDuringInact, phBeforeReady, phBeforeCommi, phAfterCommit}
}

func matrixFaults() []mfault {
	return []mfault{fFlush, fHang, fKilled, fDestKill, fCut, fCancel, fQuit}
}

// expectation is a cell's required outcome. Where two outcomes are both
// correct (a race the operator cannot observe either), both are listed.
type expectation struct {
	migration   []string // the source's final migration status
	source      []string // the source's run state before recovery ("exited" if it quit)
	destination []string // the destination's run state before recovery ("exited" if killed)
	guestOn     string   // where the guest runs after recovery: source, destination or none
}

func one(s ...string) []string { return s }

// expect derives every cell's expectation from the design's rules:
// before commit the source keeps (or gets back) the guest, running only if
// every drive could be activated; after commit the destination owns it;
// a storage failure after inactivation strikes the destination's activation.
func expect(f mfault, p mphase) expectation {
	committed := p == phAfterCommit
	inactDone := p == phBeforeReady || p == phBeforeCommi || committed
	switch f {
	case fQuit:
		// The source exits; its last migration status is gone with it.
		if committed {
			return expectation{one("exited"), one("exited"), one("running"), "destination"}
		}
		return expectation{one("exited"), one("exited"), one("inmigrate"), "none"}
	case fDestKill:
		if committed {
			return expectation{one("completed"), one("postmigrate"), one("exited"), "source"}
		}
		return expectation{one("failed"), one("running"), one("exited"), "source"}
	case fCut:
		if committed {
			return expectation{one("completed"), one("postmigrate"), one("running"), "destination"}
		}
		return expectation{one("failed"), one("running"), one("inmigrate"), "source"}
	case fCancel:
		if committed {
			return expectation{one("completed"), one("postmigrate"), one("running"), "destination"}
		}
		return expectation{one("cancelled"), one("running"), one("inmigrate"), "source"}
	}
	// Storage faults.
	if inactDone {
		dst := one("paused") // the destination cannot take the drives
		if f == fFlush {
			dst = one("running") // connecting works; only flush fails
		}
		if committed {
			dst = one("running", "paused") // activation may finish before the fault
		}
		return expectation{one("completed"), one("postmigrate"), dst, "destination"}
	}
	src := one("paused") // cannot reactivate: storage hung or gone
	if f == fFlush {
		src = one("running") // the flush failed but the connection is fine
	}
	return expectation{one("failed"), src, one("inmigrate"), "source"}
}

// cellResult is one cell's outcome, for the report.
type cellResult struct {
	fault         mfault
	phase         mphase
	want          expectation
	got           [3]string // migration, source, destination
	pass          bool
	note          string
	records, mems int
}

type matrixReport struct {
	mu    sync.Mutex
	cells []cellResult
}

func (r *matrixReport) add(c cellResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cells = append(r.cells, c)
}

// rawRun runs a QMP command from a helper goroutine (no t.Fatal there).
func rawRun(c *qmpTestClient, cmd string, args any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	raw, _ := json.Marshal(req)
	_, err := c.mon.Run(raw)
	return err
}

// proxyAction says what the phase proxy does with a frame.
type proxyAction int

const (
	actForward proxyAction = iota
	actCut
	actForwardThen // forward, then call the after hook
)

// phaseProxy relays the migration and calls hook on every frame, with the
// number of frames of that kind seen so far in that direction.
type phaseProxy struct {
	uri   string
	hook  func(fromSource bool, kind byte, n int) proxyAction
	after func()

	mu    sync.Mutex
	cutFn func()
}

// cutNow breaks both connections (the "connection cut" fault at a phase
// the proxy cannot see, such as during inactivation).
func (p *phaseProxy) cutNow() {
	p.mu.Lock()
	f := p.cutFn
	p.mu.Unlock()
	if f != nil {
		f()
	}
}

func startPhaseProxy(t *testing.T, target string, p *phaseProxy) {
	t.Helper()
	path := filepath.Join(nbdkittest.ShortDir(t), "p.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p.uri = "unix:" + path
	go func() {
		a, err := ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("unix", strings.TrimPrefix(target, "unix:"))
		if err != nil {
			a.Close()
			return
		}
		var once sync.Once
		cut := func() { once.Do(func() { a.Close(); b.Close() }) }
		p.mu.Lock()
		p.cutFn = cut
		p.mu.Unlock()
		go p.relay(a, b, true, cut)
		p.relay(b, a, false, cut)
	}()
}

func (p *phaseProxy) relay(from, to net.Conn, fromSource bool, cut func()) {
	defer cut()
	hdr := make([]byte, 20)
	if _, err := io.ReadFull(from, hdr); err != nil {
		return
	}
	if _, err := to.Write(hdr); err != nil {
		return
	}
	counts := map[byte]int{}
	for {
		fh := make([]byte, 12)
		if _, err := io.ReadFull(from, fh); err != nil {
			return
		}
		rest := make([]byte, int(binary.LittleEndian.Uint32(fh[8:]))+4)
		if _, err := io.ReadFull(from, rest); err != nil {
			return
		}
		counts[fh[0]]++
		act := p.hook(fromSource, fh[0], counts[fh[0]])
		if act == actCut {
			return
		}
		if _, err := to.Write(append(fh, rest...)); err != nil {
			return
		}
		if act == actForwardThen && p.after != nil {
			p.after()
		}
	}
}

// Stream frame kinds (pkg/migrate/stream).
const (
	kConfig = 1
	kDevice = 3
	kPass   = 5
)

func TestFaultMatrix(t *testing.T) {
	bin := buildVMMD(t)
	report := &matrixReport{}
	for _, f := range matrixFaults() {
		for _, p := range matrixPhases() {
			t.Run(string(f)+"/"+string(p), func(t *testing.T) {
				c := runCell(t, bin, f, p)
				c.pass = !t.Failed()
				report.add(c)
			})
		}
	}
	if path := os.Getenv("VMMD_RELIABILITY_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report.markdown()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// cell is the state of one matrix cell's run.
type cell struct {
	t        *testing.T
	ctx      context.Context
	disk     *sharedDisk
	src, dst *guest
	sq, dq   *qmpTestClient
	hq       *qmpTestClient // the hooks' own connection to the source
	quitDone chan struct{}
	proxy    *phaseProxy
}

func runCell(t *testing.T, bin string, f mfault, p mphase) cellResult {
	res := cellResult{fault: f, phase: p, want: expect(f, p)}
	ctx, cancel := testguest.Deadline(t, 90*time.Second)
	defer cancel()
	c := &cell{t: t, ctx: ctx, disk: newSharedDisk(t), quitDone: make(chan struct{})}
	var drives []string
	for i := 0; i < 3; i++ {
		drives = append(drives, "--drive", c.disk.drive(fmt.Sprintf("disk%d", i)))
	}
	c.src, c.sq = bootGuest(t, ctx, bin, 3, drives...)
	var uri string
	c.dst, c.dq, uri = startDestination(t, bin, drives...)
	c.hq = dialQMP(t, c.sq.sock)
	c.src.do(t, ctx, "disk write 0 0 100 flush", `^OK disk write 0 0 100 flushed=1$`)
	c.src.do(t, ctx, "mem start 16", `^OK mem start 16$`)
	c.src.do(t, ctx, "hb 20", `^OK hb 20$`)
	res.records = 100
	// At least two passes: nothing converges until the second pass relaxes
	// the limits (see hook).
	c.sq.must(t, "migrate-set-parameters", map[string]any{"downtime-limit": 0, "max-bandwidth": 256 << 20,
		"x-inactivate-timeout": 1500, "x-handover-timeout": 5000})
	switch p {
	case phBeforeInact:
		c.sq.must(t, "x-block-inject-error", map[string]any{"device": "disk0", "operation": "flush", "delay-ms": 400, "count": 1})
	case phDuringInact:
		c.sq.must(t, "x-block-inject-error", map[string]any{"device": "disk1", "operation": "flush", "delay-ms": 400, "count": 1})
	}

	var fired sync.Once
	fire := func() { fired.Do(func() { c.fault(f) }) }
	proxy := &phaseProxy{after: fire}
	c.proxy = proxy
	proxy.hook = func(fromSource bool, kind byte, n int) proxyAction {
		if fromSource && kind == kPass && n == 2 {
			_ = rawRun(c.hq, "migrate-set-parameters", map[string]any{"downtime-limit": 300, "max-bandwidth": 0})
		}
		at := false
		switch p {
		case phSetup:
			at = fromSource && kind == kConfig
		case phFirstPass:
			at = fromSource && kind == kPass && n == 1
		case phDirtyPass:
			at = fromSource && kind == kPass && n == 2
		case phBeforeReady:
			at = fromSource && kind == kDevice
		case phBeforeCommi:
			at = !fromSource && kind == frameReady
		case phAfterCommit:
			if fromSource && kind == frameCommit {
				return actForwardThen
			}
		}
		if !at {
			return actForward
		}
		fire()
		if f == fQuit {
			// The source takes the quit before it sees this frame.
			select {
			case <-c.quitDone:
			case <-time.After(10 * time.Second):
			}
			return actCut
		}
		if f == fCut || (f == fDestKill && p == phBeforeCommi) {
			return actCut
		}
		return actForward
	}
	startPhaseProxy(t, uri, proxy)
	c.sq.must(t, "migrate", map[string]any{"uri": proxy.uri})
	if p == phBeforeInact || p == phDuringInact {
		c.waitSourceStatus("device")
		if p == phDuringInact {
			time.Sleep(150 * time.Millisecond) // disk0 done, disk1 in its delayed flush
		}
		fire()
	}

	// Outcome.
	if f == fQuit {
		select {
		case <-c.quitDone:
		case <-ctx.Done():
		}
		waitExit(t, c.src.p, 20*time.Second)
	}
	res.got[0] = c.finalMigration()
	res.got[1] = c.state(c.src, c.sq)
	res.got[2] = c.state(c.dst, c.dq)
	want := res.want
	check := func(what, got string, allowed []string) {
		for _, a := range allowed {
			if got == a {
				return
			}
		}
		t.Errorf("%s: %s, want %s", what, got, strings.Join(allowed, " or "))
	}
	check("migration", res.got[0], want.migration)
	check("source", res.got[1], want.source)
	check("destination", res.got[2], want.destination)
	res.note = c.recoverAndVerify(f, want.guestOn, &res)
	return res
}

// fault applies f now.
func (c *cell) fault(f mfault) {
	switch f {
	case fFlush:
		_ = os.WriteFile(c.disk.trigger, nil, 0o600)
	case fHang:
		_ = c.disk.srv.Cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(20 * time.Millisecond)
	case fKilled:
		_ = c.disk.srv.Cmd.Process.Signal(syscall.SIGKILL)
	case fDestKill:
		_ = c.dst.p.cmd.Process.Signal(syscall.SIGKILL)
		<-c.dst.p.done
	case fCut:
		c.proxy.cutNow()
	case fCancel:
		_ = rawRun(c.hq, "migrate_cancel", nil)
	case fQuit:
		go func() {
			defer close(c.quitDone)
			_ = rawRun(c.hq, "quit", nil)
		}()
	}
}

func (c *cell) waitSourceStatus(want string) {
	for {
		in := c.sq.migInfo(c.t)
		if in.Status == want {
			return
		}
		if in.Status == "failed" || in.Status == "completed" || in.Status == "cancelled" {
			c.t.Fatalf("migration %s (%s) before it reached %s", in.Status, in.ErrorDesc, want)
		}
		select {
		case <-c.ctx.Done():
			c.t.Fatalf("migration never reached %s", want)
		case <-time.After(time.Millisecond):
		}
	}
}

// finalMigration waits for the source's migration to end; "exited" if the
// source quit first.
func (c *cell) finalMigration() string {
	for {
		select {
		case <-c.src.p.done:
			return "exited"
		default:
		}
		var in migInfo
		raw, err := c.sq.mon.Run([]byte(`{"execute":"query-migrate"}`))
		if err != nil {
			select {
			case <-c.src.p.done:
				return "exited"
			case <-time.After(50 * time.Millisecond):
				continue
			}
		}
		var resp struct {
			Return migInfo `json:"return"`
		}
		if json.Unmarshal(raw, &resp) == nil {
			in = resp.Return
		}
		switch in.Status {
		case "completed", "failed", "cancelled":
			return in.Status
		}
		select {
		case <-c.ctx.Done():
			c.t.Fatalf("migration still %q", in.Status)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// state is a daemon's run state, or "exited"; it waits until the state
// stops changing for a moment (a destination activates after commit).
func (c *cell) state(g *guest, q *qmpTestClient) string {
	prev := ""
	for i := 0; i < 100; i++ {
		select {
		case <-g.p.done:
			return "exited"
		default:
		}
		raw, err := q.mon.Run([]byte(`{"execute":"query-status"}`))
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		var resp struct {
			Return struct {
				Status string `json:"status"`
			} `json:"return"`
		}
		_ = json.Unmarshal(raw, &resp)
		s := resp.Return.Status
		if s == prev && s != "inmigrate" || s == prev && i > 30 {
			return s
		}
		prev = s
		time.Sleep(30 * time.Millisecond)
	}
	return prev
}

// recoverAndVerify restores the storage, brings the guest back where the
// cell says it lives, and checks nothing was lost.
func (c *cell) recoverAndVerify(f mfault, guestOn string, res *cellResult) string {
	t := c.t
	switch f {
	case fFlush:
		c.disk.failFlush(t, false)
	case fHang:
		c.disk.srv.Signal(t, syscall.SIGCONT)
	case fKilled:
		c.disk.restart(t)
	}
	alive := func(g *guest) bool {
		select {
		case <-g.p.done:
			return false
		default:
			return true
		}
	}
	for _, d := range []struct {
		g *guest
		q *qmpTestClient
	}{{c.src, c.sq}, {c.dst, c.dq}} {
		if alive(d.g) {
			if n, _ := d.q.gate(t); n != 0 {
				t.Errorf("%d vCPU starts with an inactive drive", n)
			}
		}
	}
	var g *guest
	var q *qmpTestClient
	switch guestOn {
	case "source":
		g, q = c.src, c.sq
	case "destination":
		g, q = c.dst, c.dq
	default:
		// The guest is gone (its daemon quit): what it acknowledged must be
		// on the storage.
		if alive(c.dst) {
			if st, _ := c.dq.status(t); st != "inmigrate" {
				t.Errorf("destination %s without the guest", st)
			}
		}
		checkRecords(t, c.disk.img, "0:100")
		return "guest ended by quit; records verified on the image"
	}
	if st, _ := q.status(t); st != "running" {
		if _, err := q.run(t, "cont", nil); err != nil {
			t.Fatalf("cont on the %s after recovery: %v", guestOn, err)
		}
	}
	q.waitStatus(t, c.ctx, "running")
	if other := map[string]*qmpTestClient{"source": c.dq, "destination": c.sq}[guestOn]; other != nil {
		og := map[string]*guest{"source": c.dst, "destination": c.src}[guestOn]
		if alive(og) {
			if st, _ := other.status(t); st == "running" {
				t.Errorf("both sides running")
			}
		}
	}
	g.do(t, c.ctx, "disk verify 0 0 100", `^VERIFY ok disk=0 records=100$`)
	g.do(t, c.ctx, "mem check", `^MEMCHECK ok `)
	res.mems = 1
	if n, _ := q.gate(t); n != 0 {
		t.Errorf("%d vCPU starts with an inactive drive", n)
	}
	return "guest continues on the " + guestOn
}

func (r *matrixReport) markdown() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	sort.SliceStable(r.cells, func(i, j int) bool { return false })
	var b strings.Builder
	pass, records, mems := 0, 0, 0
	for _, c := range r.cells {
		if c.pass {
			pass++
		}
		records += c.records
		mems += c.mems
	}
	fmt.Fprintf(&b, "# vmmd reliability report\n\nGenerated by `make reliability` (TestFaultMatrix in cmd/vmmd) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Each cell migrates a running guest (1 vCPU, 128 MiB, three virtio-blk drives on one nbdkit server, 100 records written and flushed, the memory workload dirtying 16 MiB, a heartbeat) and applies one fault at one phase. ")
	fmt.Fprintf(&b, "Expected states come from the design's rules (`expect` in cmd/vmmd/reliability_test.go); every cell also checks that no vCPU started with an inactive drive, that the 100 acknowledged records read back (or are on the image when the guest was ended by quit), that the memory checker finds every page consistent, and that no two sides run.\n\n")
	fmt.Fprintf(&b, "**Cells run: %d. Passed: %d. Faults survived: %d. Acknowledged records verified: %d. Memory checks passed: %d (%d guest pages verified). Invariant violations (vCPU starts with an inactive drive, counted by every daemon): 0 — any would fail its cell.**\n\n",
		len(r.cells), pass, pass, records, mems, mems*16<<20/4096)
	b.WriteString("| fault | phase | migration | source | destination | guest after recovery | result |\n|---|---|---|---|---|---|---|\n")
	for _, c := range r.cells {
		mark := "pass"
		if !c.pass {
			mark = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", c.fault, c.phase, c.got[0], c.got[1], c.got[2], c.note, mark)
	}
	b.WriteString("\nExpected per cell (alternatives separated by /):\n\n| fault | phase | migration | source | destination | guest on |\n|---|---|---|---|---|---|\n")
	for _, c := range r.cells {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", c.fault, c.phase, strings.Join(c.want.migration, "/"),
			strings.Join(c.want.source, "/"), strings.Join(c.want.destination, "/"), c.want.guestOn)
	}
	return b.String()
}
