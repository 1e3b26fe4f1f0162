package qmp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// socketPair returns two connected unix stream sockets.
func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	conv := func(fd int, name string) (*net.UnixConn, error) {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			return nil, fmt.Errorf("FileConn: %w", err)
		}
		return c.(*net.UnixConn), nil
	}
	a, err := conv(fds[0], "client")
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	b, err := conv(fds[1], "server")
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// feedBytes serves one connection, sends in (chunk bytes per write),
// half-closes and returns everything the server wrote until it closed the
// connection. It fails if that takes longer than limit.
func feedBytes(s *Server, in []byte, chunk int, limit time.Duration) ([]byte, error) {
	client, server, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer client.Close()
	served := make(chan error, 1)
	go func() { served <- s.ServeConn(context.Background(), server) }()
	wrote := make(chan error, 1)
	go func() {
		_ = client.SetWriteDeadline(time.Now().Add(limit))
		for off := 0; off < len(in); off += chunk {
			if _, err := client.Write(in[off:min(off+chunk, len(in))]); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- client.CloseWrite()
	}()
	_ = client.SetReadDeadline(time.Now().Add(limit))
	out, rerr := io.ReadAll(client)
	if werr := <-wrote; werr != nil && !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		return out, fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return out, fmt.Errorf("read: %w", rerr)
	}
	select {
	case err := <-served:
		return out, err
	case <-time.After(limit):
		return out, errors.New("ServeConn did not return")
	}
}

// waitGoroutines fails the test unless the goroutine count falls back to
// base (a leak check in the spirit of goleak, without the dependency).
func waitGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines still running, want %d:\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
