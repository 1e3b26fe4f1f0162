package qmp

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
)

// dialGreeting connects and returns the connection and its first line.
func dialGreeting(t *testing.T, sock string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(nc)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read the first line: %v", err)
	}
	return nc, r, line
}

// TestMaxConns: past MaxConns a client is told why where the greeting
// would be and on its first command, then closed; the clients already
// connected are untouched, and a freed slot is served again.
func TestMaxConns(t *testing.T) {
	_, sock, _ := newTestServer(t, ServerConfig{MaxConns: 2})
	var held []net.Conn
	for range 2 {
		nc, _, line := dialGreeting(t, sock)
		if !strings.Contains(line, `"QMP"`) {
			t.Fatalf("client within the limit got %q, want the greeting", line)
		}
		held = append(held, nc)
	}

	nc, r, line := dialGreeting(t, sock)
	var refusal struct {
		Error struct{ Class, Desc string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &refusal); err != nil {
		t.Fatalf("refusal %q: %v", line, err)
	}
	if refusal.Error.Class != "GenericError" || !strings.Contains(refusal.Error.Desc, "too many QMP clients: 2 are connected") {
		t.Fatalf("refusal = %q", line)
	}
	if _, err := io.WriteString(nc, `{"execute":"qmp_capabilities"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	if again, err := r.ReadString('\n'); err != nil || again != line {
		t.Fatalf("answer to the first command = %q, %v; want the refusal again", again, err)
	}
	if rest, err := r.ReadString('\n'); err != io.EOF {
		t.Fatalf("after the refusal: %q, %v; want the connection closed", rest, err)
	}

	// go-qemu reports the refusal as the handshake's error.
	mon, err := goqmp.NewSocketMonitor("unix", sock, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = mon.Connect()
	if err == nil || !strings.Contains(err.Error(), "too many QMP clients") {
		t.Fatalf("go-qemu Connect past the limit: %v, want the refusal", err)
	}
	_ = mon.Disconnect()

	// The held clients still work.
	if _, err := io.WriteString(held[0], `{"execute":"qmp_capabilities","id":1}`+"\n"); err != nil {
		t.Fatal(err)
	}
	if l, err := bufio.NewReader(held[0]).ReadString('\n'); err != nil || !strings.Contains(l, `"return"`) {
		t.Fatalf("held client after refusals: %q, %v", l, err)
	}

	// A slot freed is a slot served.
	held[1].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, line := dialGreeting(t, sock)
		if strings.Contains(line, `"QMP"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a client left, a new one still gets %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMaxConnsFlood: many clients past the limit that never read or write
// cost nothing lasting: the server keeps serving, Close returns promptly
// and no goroutine is left.
func TestMaxConnsFlood(t *testing.T) {
	base := runtime.NumGoroutine()
	s := NewServer(ServerConfig{MaxConns: 1})
	sock := t.TempDir() + "/qmp.sock"
	if err := s.Listen(t.Context(), "unix:"+sock); err != nil {
		t.Fatal(err)
	}
	first, _, line := dialGreeting(t, sock)
	if !strings.Contains(line, `"QMP"`) {
		t.Fatalf("first client got %q", line)
	}
	var flood []net.Conn
	for range 200 {
		nc, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, nc)
	}
	if _, err := io.WriteString(first, `{"execute":"qmp_capabilities","id":"x"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	_ = first.SetDeadline(time.Now().Add(5 * time.Second))
	if l, err := bufio.NewReader(first).ReadString('\n'); err != nil || !strings.Contains(l, `"return"`) {
		t.Fatalf("served client during the flood: %q, %v", l, err)
	}
	t0 := time.Now()
	s.Close()
	if d := time.Since(t0); d > refuseWait/2 {
		t.Errorf("Close took %v with refusals in progress", d)
	}
	for _, nc := range flood {
		nc.Close()
	}
	first.Close()
	waitGoroutines(t, base)
}
