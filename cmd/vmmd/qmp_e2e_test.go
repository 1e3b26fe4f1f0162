package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	goqemu "github.com/digitalocean/go-qemu/qemu"
	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// e2eSockPath returns a socket path short enough for sun_path (108 bytes),
// which t.TempDir's long names can exceed.
func e2eSockPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

// e2eStartVMMD runs vmmd on the test guest with one QMP socket.
func e2eStartVMMD(t *testing.T, bin string, extra ...string) (*vmmdProc, string) {
	t.Helper()
	sock := e2eSockPath(t, "vmmd.sock")
	args := append([]string{"--memory", "128M", "--qmp", "unix:" + sock}, extra...)
	return startVMMD(t, bin, args...), sock
}

// e2eConn is a raw QMP client: it sends bytes as given and reads whole
// CRLF-terminated lines, so framing is checked too.
type e2eConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// e2eDial connects to sock, retrying while the server creates it.
func e2eDial(t *testing.T, sock string) *e2eConn {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return &e2eConn{t: t, conn: c, r: bufio.NewReader(c)}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial QMP %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (q *e2eConn) send(s string) {
	q.t.Helper()
	if _, err := q.conn.Write([]byte(s)); err != nil {
		q.t.Fatalf("send %q: %v", s, err)
	}
}

// recv returns the next line without its CRLF and fails if the line is not
// CRLF-terminated or does not arrive within 10 s.
func (q *e2eConn) recv() string {
	q.t.Helper()
	line, err := q.readLine(10 * time.Second)
	if err != nil {
		q.t.Fatal(err)
	}
	return line
}

func (q *e2eConn) readLine(d time.Duration) (string, error) {
	q.conn.SetReadDeadline(time.Now().Add(d))
	line, err := q.r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read QMP line (got %q): %w", line, err)
	}
	if !strings.HasSuffix(line, "\r\n") {
		return "", fmt.Errorf("QMP line %q does not end in CRLF", line)
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

// negotiate reads the greeting and completes capabilities negotiation.
func (q *e2eConn) negotiate() {
	q.t.Helper()
	if g := q.recv(); !strings.HasPrefix(g, `{"QMP": `) {
		q.t.Fatalf("greeting %q", g)
	}
	q.send(`{"execute":"qmp_capabilities"}`)
	if r := q.recv(); r != `{"return": {}}` {
		q.t.Fatalf("qmp_capabilities reply %q", r)
	}
}

var e2eTimestampRE = regexp.MustCompile(`"timestamp": \{"seconds": \d+, "microseconds": \d+\}`)

// e2eNormTS replaces an event's timestamp values with zeros, checking
// the members are in QEMU's order and plausible (within a minute of now).
func e2eNormTS(t *testing.T, line string) string {
	t.Helper()
	m := regexp.MustCompile(`"seconds": (\d+)`).FindStringSubmatch(line)
	if m != nil {
		var s int64
		fmt.Sscan(m[1], &s)
		if d := time.Now().Unix() - s; d < -60 || d > 60 {
			t.Errorf("event timestamp %d is %d s away from now: %q", s, d, line)
		}
	}
	return e2eTimestampRE.ReplaceAllString(line, `"timestamp": {"seconds": 0, "microseconds": 0}`)
}

// e2eSameJSON reports whether two lines hold the same JSON value; member order
// is not significant in QMP (QEMU's comes from a hash table).
func e2eSameJSON(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return a == b
	}
	return reflect.DeepEqual(va, vb)
}

// e2eCompactRE matches QEMU's output style: ", " and ": " separators, no
// other whitespace outside strings (strings here hold no quotes).
var e2eCompactRE = regexp.MustCompile(`^\{("[^"]*"|[-0-9.]+|true|false|null|[\[\]{}]|, |: )*\}$`)

// TestQMPReferenceSession replays the reference session of the issue line by
// line against a live vmmd.
func TestQMPReferenceSession(t *testing.T) {
	bin := buildVMMD(t)
	_, sock := e2eStartVMMD(t, bin)
	q := e2eDial(t, sock)
	steps := []struct {
		send string
		want []string
	}{
		{"", []string{`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": "*"}, "capabilities": []}}`}},
		{`{"execute":"query-status","id":7}`, []string{`{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 7}`}},
		{`{"execute":"qmp_capabilities"}`, []string{`{"return": {}}`}},
		{`{"execute":"query-status"}`, []string{`{"return": {"status": "running", "running": true}}`}},
		{`{"execute":"stop"}`, []string{`{"timestamp": {"seconds": 0, "microseconds": 0}, "event": "STOP"}`, `{"return": {}}`}},
		{`{"execute":"query-status"}`, []string{`{"return": {"status": "paused", "running": false}}`}},
		{`{"execute":"cont"}`, []string{`{"timestamp": {"seconds": 0, "microseconds": 0}, "event": "RESUME"}`, `{"return": {}}`}},
		{`{"execute":"query-status"}`, []string{`{"return": {"status": "running", "running": true}}`}},
		{`{"execute":"query-version"}`, []string{`{"return": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": "*"}}`}},
		{`{"execute":"no-such-command"}`, []string{`{"error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}}`}},
		{`{"execute":}`, []string{`{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}`}},
		// Recovery: the next message is parsed normally; no newline is sent,
		// as go-qemu sends none.
		{`{"execute":"query-status","id":{"tag":["a",1]}}`, []string{`{"return": {"status": "running", "running": true}, "id": {"tag": ["a", 1]}}`}},
		{`{"execute":"stop","id":"s1"}`, []string{`{"timestamp": {"seconds": 0, "microseconds": 0}, "event": "STOP"}`, `{"return": {}, "id": "s1"}`}},
		{`{"execute":"cont","id":2.5}`, []string{`{"timestamp": {"seconds": 0, "microseconds": 0}, "event": "RESUME"}`, `{"return": {}, "id": 2.5}`}},
		{`{"execute":"qmp_capabilities","id":null}`, []string{`{"error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}, "id": null}`}},
	}
	pkgRE := regexp.MustCompile(`"package": "vmmd [^"]+"`)
	for i, st := range steps {
		if st.send != "" {
			q.send(st.send)
		}
		for _, want := range st.want {
			got := e2eNormTS(t, q.recv())
			if !e2eCompactRE.MatchString(got) {
				t.Errorf("step %d: %q is not in QEMU's compact style", i, got)
			}
			got = pkgRE.ReplaceAllString(got, `"package": "*"`)
			if got != want {
				if e2eSameJSON(got, want) {
					t.Logf("step %d: member order differs from QEMU's (not significant): got %s", i, got)
					continue
				}
				t.Errorf("step %d: sent %s\n got: %s\nwant: %s", i, st.send, got, want)
			}
		}
	}
	// Nothing further may be pending.
	if line, err := q.readLine(200 * time.Millisecond); err == nil {
		t.Errorf("unexpected extra line %q", line)
	}
}

// TestQMPGoQemu drives vmmd with go-qemu unchanged.
func TestQMPGoQemu(t *testing.T) {
	bin := buildVMMD(t)
	_, sock := e2eStartVMMD(t, bin, "--name", "gotest")
	e2eDial(t, sock).conn.Close() // wait for the socket to exist
	mon, err := goqmp.NewSocketMonitor("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("NewSocketMonitor: %v", err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer mon.Disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evc, err := mon.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	// go-qemu's reader blocks on an unread event (with QEMU too), so the
	// events are drained into a buffer, as any go-qemu user must.
	events := make(chan goqmp.Event, 64)
	go func() {
		for e := range evc {
			events <- e
		}
		close(events)
	}()
	rm := raw.NewMonitor(mon)
	st, err := rm.QueryStatus()
	if err != nil || st.Status != raw.RunStateRunning || !st.Running {
		t.Fatalf("QueryStatus = %+v, %v; want running", st, err)
	}
	ver, err := rm.QueryVersion()
	if err != nil || ver.Qemu.Major != 10 || ver.Qemu.Minor != 0 || ver.Qemu.Micro != 0 || !strings.HasPrefix(ver.Package, "vmmd ") {
		t.Fatalf("QueryVersion = %+v, %v", ver, err)
	}
	name, err := rm.QueryName()
	if err != nil || name.Name == nil || *name.Name != "gotest" {
		t.Fatalf("QueryName = %+v, %v", name, err)
	}
	waitEvent := func(want string) {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events channel closed waiting for %s", want)
			}
			if ev.Event != want {
				t.Fatalf("event %q, want %q", ev.Event, want)
			}
			if ev.Timestamp.Seconds == 0 {
				t.Errorf("%s event has no timestamp: %+v", want, ev)
			}
		case <-ctx.Done():
			t.Fatalf("no %s event", want)
		}
	}
	if err := rm.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitEvent("STOP")
	if st, err = rm.QueryStatus(); err != nil || st.Status != raw.RunStatePaused || st.Running {
		t.Fatalf("QueryStatus after stop = %+v, %v", st, err)
	}
	if err := rm.Cont(); err != nil {
		t.Fatalf("Cont: %v", err)
	}
	waitEvent("RESUME")
	// An error reply comes back as an error, not a hang or a decode failure.
	if _, err := mon.Run([]byte(`{"execute":"no-such-command"}`)); err == nil || !strings.Contains(err.Error(), "no-such-command has not been found") {
		t.Errorf("unknown command error = %v", err)
	}

	d, err := goqemu.NewDomain(mon, "gotest")
	if err != nil {
		t.Fatalf("NewDomain: %v", err)
	}
	if s, err := d.Status(); err != nil || s != goqemu.StatusRunning {
		t.Errorf("Domain.Status = %v, %v; want running", s, err)
	}
	if v, err := d.Version(); err != nil || v != "10.0.0" {
		t.Errorf("Domain.Version = %q, %v", v, err)
	}
	if err := rm.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if s, err := d.Status(); err != nil || s != goqemu.StatusPaused {
		t.Errorf("Domain.Status after stop = %v, %v; want paused", s, err)
	}
}

// TestQMPLoad has 64 clients issue 100 pipelined query-status each while
// the VM is paused and resumed repeatedly: every reply must arrive, in
// order, with its id and a running or paused status.
func TestQMPLoad(t *testing.T) {
	const clients, calls = 64, 100
	bin := buildVMMD(t)
	_, sock := e2eStartVMMD(t, bin)
	ctl := e2eDial(t, sock)
	ctl.negotiate()

	conns := make([]*e2eConn, clients)
	for i := range conns {
		conns[i] = e2eDial(t, sock)
		conns[i].negotiate()
	}
	done := make(chan struct{})
	var toggles int
	var ctlErr error
	go func() {
		defer close(done)
		for ctx := 0; ; ctx++ {
			time.Sleep(2 * time.Millisecond)
			cmd := "stop"
			if ctx%2 == 1 {
				cmd = "cont"
			}
			fmt.Fprintf(ctl.conn, `{"execute":%q,"id":%d}`, cmd, ctx)
			for {
				line, err := ctl.readLine(10 * time.Second)
				if err != nil {
					ctlErr = err
					return
				}
				if strings.HasPrefix(line, `{"return": {}, "id": `) {
					break
				}
				if !strings.Contains(line, `"event"`) {
					ctlErr = fmt.Errorf("%s: unexpected reply %q", cmd, line)
					return
				}
			}
			toggles++
			if toggles >= 200 {
				return
			}
		}
	}()

	type reply struct {
		Return *struct {
			Status  string `json:"status"`
			Running bool   `json:"running"`
		} `json:"return"`
		ID    *string `json:"id"`
		Event string  `json:"event"`
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	counts := make([]map[string]int, clients)
	for c := range conns {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			q := conns[c]
			counts[c] = map[string]int{}
			go func() {
				var b strings.Builder
				for i := 0; i < calls; i++ {
					fmt.Fprintf(&b, `{"execute":"query-status","id":"c%d-%d"}`, c, i)
				}
				q.conn.Write([]byte(b.String()))
			}()
			for i := 0; i < calls; {
				line, err := q.readLine(20 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("client %d after %d replies: %w", c, i, err)
					return
				}
				var r reply
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					errs <- fmt.Errorf("client %d: bad line %q: %w", c, line, err)
					return
				}
				if r.Event != "" {
					counts[c][r.Event]++
					continue
				}
				want := fmt.Sprintf("c%d-%d", c, i)
				if r.ID == nil || *r.ID != want || r.Return == nil {
					errs <- fmt.Errorf("client %d reply %d = %q, want a return with id %q", c, i, line, want)
					return
				}
				switch {
				case r.Return.Status == "running" && r.Return.Running:
				case r.Return.Status == "paused" && !r.Return.Running:
				default:
					errs <- fmt.Errorf("client %d reply %d: status %q running %v", c, i, r.Return.Status, r.Return.Running)
					return
				}
				counts[c][r.Return.Status]++
				i++
			}
		}(c)
	}
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ctlErr != nil {
		t.Fatalf("pause/resume loop: %v", ctlErr)
	}
	total := map[string]int{}
	for _, m := range counts {
		for k, v := range m {
			total[k] += v
		}
	}
	t.Logf("%d stop/cont toggles; totals over all clients: %v", toggles, total)
	if toggles < 2 {
		t.Errorf("only %d stop/cont toggles ran during the load", toggles)
	}
	// Every client still works after the storm.
	for c, q := range conns[:4] {
		q.send(`{"execute":"query-status","id":"last"}`)
		for {
			line := q.recv()
			if strings.Contains(line, `"event"`) {
				continue
			}
			if !strings.HasSuffix(line, `"id": "last"}`) {
				t.Errorf("client %d final reply %q", c, line)
			}
			break
		}
	}
}

// TestQMPQuit checks quit: reply {} then SHUTDOWN {guest:false,
// reason:host-qmp-quit}, and vmmd exits 0.
func TestQMPQuit(t *testing.T) {
	bin := buildVMMD(t)
	p, sock := e2eStartVMMD(t, bin)
	q := e2eDial(t, sock)
	q.negotiate()
	q.send(`{"execute":"quit","id":"bye"}`)
	if r := q.recv(); r != `{"return": {}, "id": "bye"}` {
		t.Errorf("quit reply %q", r)
	}
	ev := e2eNormTS(t, q.recv())
	want := `{"timestamp": {"seconds": 0, "microseconds": 0}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`
	if !e2eSameJSON(ev, want) {
		t.Errorf("event after quit:\n got: %s\nwant: %s", ev, want)
	}
	if code := waitExit(t, p, 10*time.Second); code != 0 {
		t.Errorf("exit code after quit = %d, want 0", code)
	}
}
