package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// qmpTestClient is a QMP connection to a vmmd under test that records every
// event, so a test can wait for one that arrived before it started looking.
type qmpTestClient struct {
	mon  *qmp.SocketMonitor
	sock string

	mu      sync.Mutex
	events  []qmp.Event
	changed chan struct{} // closed and replaced on every new event
}

// dialQMP connects to vmmd's QMP socket, waiting for it to appear.
func dialQMP(t *testing.T, sock string) *qmpTestClient {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("QMP socket %s did not appear", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mon, err := qmp.NewSocketMonitor("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial QMP: %v", err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatalf("QMP handshake: %v", err)
	}
	c := &qmpTestClient{mon: mon, sock: sock, changed: make(chan struct{})}
	events, err := mon.Events(context.Background())
	if err != nil {
		t.Fatalf("QMP events: %v", err)
	}
	go func() {
		for e := range events {
			c.mu.Lock()
			c.events = append(c.events, e)
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = mon.Disconnect() })
	return c
}

// run executes one command; a monitor that does not answer within 10 s
// fails the test (vmmd's monitor must keep answering whatever the disks do).
func (c *qmpTestClient) run(t *testing.T, cmd string, args any) (json.RawMessage, error) {
	t.Helper()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.mon.Run(raw)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal(r.out, &resp); err != nil {
			t.Fatalf("%s: bad reply %q: %v", cmd, r.out, err)
		}
		return resp.Return, nil
	case <-time.After(10 * time.Second):
		t.Fatalf("QMP %s: no answer within 10s", cmd)
		return nil, nil
	}
}

// must runs a command that has to succeed.
func (c *qmpTestClient) must(t *testing.T, cmd string, args any) json.RawMessage {
	t.Helper()
	out, err := c.run(t, cmd, args)
	if err != nil {
		t.Fatalf("QMP %s %v: %v", cmd, args, err)
	}
	return out
}

// status returns query-status's status and running fields.
func (c *qmpTestClient) status(t *testing.T) (string, bool) {
	t.Helper()
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := json.Unmarshal(c.must(t, "query-status", nil), &st); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	return st.Status, st.Running
}

// wantStatus fails unless the VM's run state is want.
func (c *qmpTestClient) wantStatus(t *testing.T, want string) {
	t.Helper()
	if st, running := c.status(t); st != want || running != (want == "running") {
		t.Fatalf("query-status = %s running=%v, want %s", st, running, want)
	}
}

// active returns query-block's inserted.active of device.
func (c *qmpTestClient) active(t *testing.T, device string) bool {
	t.Helper()
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			Active *bool `json:"active"`
		} `json:"inserted"`
	}
	out := c.must(t, "query-block", nil)
	if err := json.Unmarshal(out, &blocks); err != nil {
		t.Fatalf("query-block: %v", err)
	}
	for _, b := range blocks {
		if b.Device == device {
			if b.Inserted == nil || b.Inserted.Active == nil {
				t.Fatalf("query-block: %s has no inserted.active: %s", device, out)
			}
			return *b.Inserted.Active
		}
	}
	t.Fatalf("query-block: no device %s in %s", device, out)
	return false
}

// waitEvent returns the first event named name (from the start of the
// connection) for which match is true.
func (c *qmpTestClient) waitEvent(ctx context.Context, name string, match func(qmp.Event) bool) (qmp.Event, error) {
	for {
		c.mu.Lock()
		for _, e := range c.events {
			if e.Event == name && (match == nil || match(e)) {
				c.mu.Unlock()
				return e, nil
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return qmp.Event{}, fmt.Errorf("no %s event: %w", name, ctx.Err())
		}
	}
}

// wantErr fails unless err is a QMP error whose text contains want.
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want an error containing %q", what, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: error %q, want it to contain %q", what, err, want)
	}
}

// guest is the console side of a vmmd under test.
type guest struct {
	p   *vmmdProc
	pos int
}

// bootGuest starts vmmd with a QMP socket and waits for the guest's
// readiness line with the expected number of disks.
func bootGuest(t *testing.T, ctx context.Context, bin string, disks int, extra ...string) (*guest, *qmpTestClient) {
	t.Helper()
	sock := filepath.Join(nbdkittest.ShortDir(t), "qmp.sock")
	p := startVMMD(t, bin, append([]string{"--memory", "128M", "--qmp", "unix:" + sock}, extra...)...)
	m, pos, err := p.con.Wait(ctx, 0, regexp.MustCompile(`^GUEST-READY .* disks=(\d+)`))
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != fmt.Sprint(disks) {
		t.Fatalf("guest found %s disks, want %d: %q", m[1], disks, m[0])
	}
	return &guest{p: p, pos: pos}, dialQMP(t, sock)
}

// send writes one console command.
func (g *guest) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(g.p.stdin, cmd+"\n"); err != nil {
		t.Fatalf("console %q: %v", cmd, err)
	}
}

// expect waits for the next line matching want or a failure line and fails
// the test unless it is want; it returns the line.
func (g *guest) expect(t *testing.T, ctx context.Context, want string) string {
	t.Helper()
	re := regexp.MustCompile(want)
	_, pos, err := g.p.con.Wait(ctx, g.pos, regexp.MustCompile(want+`|^DISK-ERROR|^ERR|^VERIFY bad|^GUEST-EXCEPTION`))
	if err != nil {
		t.Fatalf("waiting for %q: %v", want, err)
	}
	g.pos = pos
	line := g.p.con.Lines()[pos-1]
	if !re.MatchString(line) {
		t.Fatalf("got %q, want %q", line, want)
	}
	return line
}

// do sends cmd and expects want.
func (g *guest) do(t *testing.T, ctx context.Context, cmd, want string) string {
	t.Helper()
	g.send(t, cmd)
	return g.expect(t, ctx, want)
}

// powerOff powers the guest off and checks vmmd exits 0.
func (g *guest) powerOff(t *testing.T) {
	t.Helper()
	g.send(t, "poweroff")
	if code := waitExit(t, g.p, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after poweroff", code)
	}
}

// faultRecords is how many records the SIGSTOP tests write in one batch:
// 112 MiB in 128-record requests, so that the batch is still running when
// nbdkit is stopped 50 ms after it began (about 13 MiB are written by then
// on the development machine).
const faultRecords = 229376

// startBatchAndStopServer starts a write batch, SIGSTOPs nbdkit while it
// runs and checks the batch had not finished by then.
func startBatchAndStopServer(t *testing.T, g *guest, srv *nbdkittest.Server) {
	t.Helper()
	g.send(t, fmt.Sprintf("disk write 0 0 %d flush", faultRecords))
	time.Sleep(50 * time.Millisecond)
	srv.Signal(t, syscall.SIGSTOP)
	for _, l := range g.p.con.Lines()[g.pos:] {
		if strings.HasPrefix(l, "OK disk write") || strings.HasPrefix(l, "DISK-ERROR") {
			t.Fatalf("the batch ended before nbdkit was stopped (%q); the test proves nothing", l)
		}
	}
}

// TestNBDServerStoppedWerrorStop: nbdkit stops answering mid-batch with
// werror=stop; vmmd pauses the VM in io-error within the request timeout,
// tells QMP why and keeps answering; after the server comes back `cont`
// retries and the guest never sees an error nor loses a write.
func TestNBDServerStoppedWerrorStop(t *testing.T) {
	img := newImage(t, 128<<20)
	// -t 1: nbdkit 1.32 can abort when a stopped multi-threaded server resumes.
	srv := nbdkittest.Start(t, "-t", "1", "file", "file="+img)
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 120*time.Second)
	defer cancel()
	g, q := bootGuest(t, ctx, bin, 1, "--drive", "file="+srv.URI+",id=disk0,werror=stop,timeout=1s")
	g.do(t, ctx, "disk mode poll", `^OK disk mode poll`)
	q.wantStatus(t, "running")

	startBatchAndStopServer(t, g, srv)
	stopped := time.Now()
	evCtx, evCancel := context.WithTimeout(ctx, 1*time.Second+4*time.Second)
	ev, err := q.waitEvent(evCtx, "BLOCK_IO_ERROR", nil)
	evCancel()
	if err != nil {
		t.Fatalf("%v within the 1s timeout + 4s after SIGSTOP", err)
	}
	t.Logf("BLOCK_IO_ERROR %v after SIGSTOP: %v", time.Since(stopped).Round(time.Millisecond), ev.Data)
	if ev.Data["device"] != "disk0" || ev.Data["action"] != "stop" {
		t.Errorf("BLOCK_IO_ERROR data %v, want device disk0, action stop", ev.Data)
	}
	if _, err := q.waitEvent(ctx, "STOP", nil); err != nil {
		t.Fatal(err)
	}
	q.wantStatus(t, "io-error")
	// The monitor keeps answering while the server is still gone.
	for range 3 {
		if !q.active(t, "disk0") {
			t.Error("disk0 reported inactive while paused on an I/O error")
		}
		q.wantStatus(t, "io-error")
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range g.p.con.Lines()[g.pos:] {
		if strings.HasPrefix(l, "DISK-ERROR") {
			t.Fatalf("guest saw %q with werror=stop", l)
		}
	}

	srv.Signal(t, syscall.SIGCONT)
	q.must(t, "cont", nil)
	if _, err := q.waitEvent(ctx, "RESUME", nil); err != nil {
		t.Fatal(err)
	}
	g.expect(t, ctx, fmt.Sprintf(`^OK disk write 0 0 %d flushed=1$`, faultRecords))
	q.wantStatus(t, "running")
	g.do(t, ctx, fmt.Sprintf("disk verify 0 0 %d", faultRecords), fmt.Sprintf(`^VERIFY ok disk=0 records=%d$`, faultRecords))
	g.powerOff(t)
	checkRecords(t, img, fmt.Sprintf("0:%d", faultRecords))
}

// TestNBDServerStoppedWerrorReport: the same outage with werror=report
// reaches the guest as an I/O error and the VM keeps running.
func TestNBDServerStoppedWerrorReport(t *testing.T) {
	img := newImage(t, 128<<20)
	srv := nbdkittest.Start(t, "-t", "1", "file", "file="+img)
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 120*time.Second)
	defer cancel()
	g, q := bootGuest(t, ctx, bin, 1, "--drive", "file="+srv.URI+",id=disk0,werror=report,timeout=1s")
	g.do(t, ctx, "disk mode poll", `^OK disk mode poll`)

	startBatchAndStopServer(t, g, srv)
	errCtx, errCancel := context.WithTimeout(ctx, 1*time.Second+4*time.Second)
	_, pos, err := g.p.con.Wait(errCtx, g.pos, regexp.MustCompile(`^DISK-ERROR|^OK disk write`))
	errCancel()
	if err != nil {
		t.Fatalf("no DISK-ERROR within the 1s timeout + 4s after SIGSTOP: %v", err)
	}
	g.pos = pos
	line := g.p.con.Lines()[pos-1]
	if !regexp.MustCompile(`^DISK-ERROR op=(write|flush) disk=0 sector=\d+ status=ioerr$`).MatchString(line) {
		t.Fatalf("got %q, want DISK-ERROR ... status=ioerr", line)
	}
	q.wantStatus(t, "running")
	g.do(t, ctx, "ping", `^PONG$`)
	srv.Signal(t, syscall.SIGCONT)
	q.wantStatus(t, "running")
	g.do(t, ctx, "ping", `^PONG$`)
	g.powerOff(t)
}

// TestImageLockHandover: once the first vmmd inactivates its drive, a
// second vmmd can start on the image; the first then cannot take it back
// (QEMU's lock text) and stays paused, until the second has gone.
func TestImageLockHandover(t *testing.T) {
	img := newImage(t, 16<<20)
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 90*time.Second)
	defer cancel()
	drive := "file=" + img + ",id=disk0"
	g1, q1 := bootGuest(t, ctx, bin, 1, "--drive", drive)
	g1.do(t, ctx, "disk write 0 0 100 flush", `^OK disk write 0 0 100 flushed=1$`)

	q1.must(t, "stop", nil)
	q1.wantStatus(t, "paused")
	q1.must(t, "blockdev-set-active", map[string]any{"active": false})
	if q1.active(t, "disk0") {
		t.Fatal("query-block shows disk0 active after blockdev-set-active false")
	}

	g2, _ := bootGuest(t, ctx, bin, 1, "--drive", drive)
	g2.do(t, ctx, "disk verify 0 0 100", `^VERIFY ok disk=0 records=100$`)

	_, err := q1.run(t, "cont", nil)
	wantErr(t, "cont while another vmmd holds the image", err, `Failed to get "write" lock`)
	q1.wantStatus(t, "paused")
	if q1.active(t, "disk0") {
		t.Error("disk0 active after a failed reactivation")
	}

	g2.powerOff(t)
	q1.must(t, "cont", nil)
	q1.wantStatus(t, "running")
	if !q1.active(t, "disk0") {
		t.Error("disk0 inactive after cont")
	}
	g1.do(t, ctx, "disk verify 0 0 100", `^VERIFY ok disk=0 records=100$`)
	g1.powerOff(t)
	checkRecords(t, img, "0:100")
}

// TestInjectedFlushFailureKeepsDriveActive: a flush failure during
// inactivation fails blockdev-set-active and leaves the drive active.
func TestInjectedFlushFailureKeepsDriveActive(t *testing.T) {
	img := newImage(t, 16<<20)
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 60*time.Second)
	defer cancel()
	g, q := bootGuest(t, ctx, bin, 1, "--drive", "file="+img+",id=disk0")
	g.do(t, ctx, "disk write 0 0 50 flush", `^OK disk write 0 0 50 flushed=1$`)

	q.must(t, "stop", nil)
	q.must(t, "x-block-inject-error", map[string]any{"device": "disk0", "operation": "flush", "errno": "EIO", "count": 1})
	_, err := q.run(t, "blockdev-set-active", map[string]any{"active": false})
	wantErr(t, "blockdev-set-active false with a failing flush", err, "inactivate disk0: flush:")
	if !q.active(t, "disk0") {
		t.Fatal("disk0 inactive after its inactivation failed")
	}
	q.wantStatus(t, "paused")

	q.must(t, "x-block-clear-injections", map[string]any{"device": "disk0"})
	q.must(t, "blockdev-set-active", map[string]any{"active": false})
	if q.active(t, "disk0") {
		t.Fatal("disk0 active after blockdev-set-active false")
	}
	q.must(t, "cont", nil)
	q.wantStatus(t, "running")
	if !q.active(t, "disk0") {
		t.Fatal("cont did not reactivate disk0")
	}
	g.do(t, ctx, "disk write 0 50 50 flush", `^OK disk write 0 50 50 flushed=1$`)
	g.do(t, ctx, "disk verify 0 0 100", `^VERIFY ok disk=0 records=100$`)
	g.powerOff(t)
	checkRecords(t, img, "0:100")
}

// TestInjectedActivateFailureKeepsVMPaused: a failing reactivation makes
// `cont` fail and the VM stay paused; once cleared, `cont` works.
func TestInjectedActivateFailureKeepsVMPaused(t *testing.T) {
	img := newImage(t, 16<<20)
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 60*time.Second)
	defer cancel()
	g, q := bootGuest(t, ctx, bin, 1, "--drive", "file="+img+",id=disk0")

	q.must(t, "stop", nil)
	q.must(t, "blockdev-set-active", map[string]any{"node-name": "disk0", "active": false})
	q.must(t, "x-block-inject-error", map[string]any{"device": "disk0", "operation": "activate", "errno": "EIO"})
	_, err := q.run(t, "cont", nil)
	wantErr(t, "cont with a failing activation", err, "disk0")
	t.Logf("cont error: %v", err)
	q.wantStatus(t, "paused")
	if q.active(t, "disk0") {
		t.Error("disk0 active after its activation failed")
	}

	q.must(t, "x-block-clear-injections", nil)
	q.must(t, "cont", nil)
	q.wantStatus(t, "running")
	if !q.active(t, "disk0") {
		t.Error("disk0 inactive after cont")
	}
	g.do(t, ctx, "disk write 0 0 10 flush", `^OK disk write 0 0 10 flushed=1$`)
	g.powerOff(t)
	checkRecords(t, img, "0:10")
}
