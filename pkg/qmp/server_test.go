package qmp

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// dialGreet connects and returns the greeting line and a line reader.
func dialGreet(t *testing.T, sock string) (net.Conn, *lineReader, string) {
	t.Helper()
	return dialGreetTB(t, sock)
}

func dialGreetTB(t testing.TB, sock string) (net.Conn, *lineReader, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	r := &lineReader{c: c, br: bufio.NewReader(c)}
	g, err := r.next(5 * time.Second)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c, r, g
}

func roundTrip(t *testing.T, c net.Conn, r *lineReader, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(c, cmd); err != nil {
		t.Fatal(err)
	}
	l, err := r.next(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestGreetingFromConfig(t *testing.T) {
	_, sock, _ := newTestServer(t, ServerConfig{Version: VersionTriple{9, 2, 0}, Package: "vmmd 0.1.0"})
	c, _, g := dialGreet(t, sock)
	defer c.Close()
	want := `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9}, "package": "vmmd 0.1.0"}, "capabilities": []}}`
	if g != want {
		t.Fatalf("greeting\n got %s\nwant %s", g, want)
	}
}

func TestListenSocketFile(t *testing.T) {
	base := runtime.NumGoroutine()
	s := NewServer(qemu72(t))
	registerFakes(t, s)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	if err := s.Listen(context.Background(), "unix:"+a+",server=on,wait=off"); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want a socket with 0600", p, fi.Mode())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("temporary files left in %s: %v", dir, ents)
	}
	// Several clients at once on both sockets.
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		for _, p := range []string{a, b} {
			c, r, _ := dialGreet(t, p)
			conns = append(conns, c)
			if got := roundTrip(t, c, r, `{"execute":"qmp_capabilities"}`); got != `{"return": {}}` {
				t.Fatal(got)
			}
		}
	}
	// A command in flight when the server closes is cancelled.
	slow, slowR, _ := dialGreet(t, a)
	roundTrip(t, slow, slowR, `{"execute":"qmp_capabilities"}`)
	io.WriteString(slow, `{"execute":"x-slow","arguments":{"ms":60000}}`)
	time.Sleep(50 * time.Millisecond)

	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if l, err := slowR.next(time.Second); err != nil || l != `{"error": {"class": "GenericError", "desc": "context canceled"}}` {
		// The reply of a command cancelled by Close is still flushed.
		t.Fatalf("slow command: %q %v", l, err)
	}
	for _, c := range append(conns, slow) {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection still open after Close: %v", err)
		}
		c.Close()
	}
	for _, p := range []string{a, b} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not removed: %v", p, err)
		}
	}
	if err := s.Listen(context.Background(), filepath.Join(dir, "c.sock")); err == nil {
		t.Fatal("Listen after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	waitGoroutines(t, base)
}

func TestListenStaleAndLive(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, _, _ := newTestServer(t, qemu72(t))
	if err := s.Listen(context.Background(), stale); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	c, _, _ := dialGreet(t, stale)
	c.Close()

	// Now stale.sock is live (ours): a second server must refuse it.
	s2 := NewServer(qemu72(t))
	defer s2.Close()
	err = s2.Listen(context.Background(), stale)
	if err == nil || !strings.Contains(err.Error(), "another process is accepting connections") {
		t.Fatalf("live socket: %v", err)
	}
	// and it must not have disturbed the first server
	c, _, _ = dialGreet(t, stale)
	c.Close()

	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep"), 0o644)
	if err := s2.Listen(context.Background(), regular); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep" {
		t.Fatal("regular file modified")
	}
	if err := s2.Listen(context.Background(), filepath.Join(dir, "nodir", "x.sock")); err == nil {
		t.Fatal("socket in a missing directory")
	}
}

func TestListenContextCancel(t *testing.T) {
	s, other, _ := newTestServer(t, qemu72(t))
	sock := filepath.Join(t.TempDir(), "ctx.sock")
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Listen(ctx, sock); err != nil {
		t.Fatal(err)
	}
	c, r, _ := dialGreet(t, sock)
	defer c.Close()
	roundTrip(t, c, r, `{"execute":"qmp_capabilities"}`)
	cancel()
	if _, err := r.next(5 * time.Second); err != io.EOF {
		t.Fatalf("connection of a cancelled listener: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Lstat(sock); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socket of a cancelled listener not removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The server and its other listener carry on.
	c2, r2, _ := dialGreet(t, other)
	defer c2.Close()
	if got := roundTrip(t, c2, r2, `{"execute":"qmp_capabilities"}`); got != `{"return": {}}` {
		t.Fatal(got)
	}
}

func TestParseAddress(t *testing.T) {
	good := map[string]string{
		"unix:/run/q.sock":                    "/run/q.sock",
		"/run/q.sock":                         "/run/q.sock",
		"unix:/run/q.sock,server,nowait":      "/run/q.sock",
		"unix:/run/q.sock,server=on,wait=off": "/run/q.sock",
		"./rel/q.sock":                        "./rel/q.sock",
		"./a:b/q.sock":                        "./a:b/q.sock",
	}
	for in, want := range good {
		if got, err := ParseAddress(in); err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"tcp:127.0.0.1:4444", "unix:", "unix:/x,wait=on", "vsock:3:4"} {
		if _, err := ParseAddress(in); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

// TestSlowCommandIsolation: a slow command holds up its own connection
// only.
func TestSlowCommandIsolation(t *testing.T) {
	_, sock, _ := newTestServer(t, qemu72(t))
	a, ar, _ := dialGreet(t, sock)
	defer a.Close()
	roundTrip(t, a, ar, `{"execute":"qmp_capabilities"}`)
	b, br, _ := dialGreet(t, sock)
	defer b.Close()
	roundTrip(t, b, br, `{"execute":"qmp_capabilities"}`)

	io.WriteString(a, `{"execute":"x-slow","arguments":{"ms":1500},"id":1}{"execute":"query-name","id":2}`)
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if got := roundTrip(t, b, br, `{"execute":"query-name"}`); got != `{"return": {}}` {
		t.Fatal(got)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("other connection waited %v for a slow command", d)
	}
	for _, want := range []string{`{"return": 1500, "id": 1}`, `{"return": {}, "id": 2}`} {
		if l, err := ar.next(5 * time.Second); err != nil || l != want {
			t.Fatalf("got %q %v, want %s", l, err, want)
		}
	}
}
