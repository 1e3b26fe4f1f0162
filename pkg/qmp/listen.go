package qmp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// listener is one listening socket and the goroutines that serve it.
type listener struct {
	path   string
	ln     *net.UnixListener
	info   os.FileInfo // identifies our socket file, so Close removes only it
	cancel context.CancelFunc
}

// ParseAddress takes a --qmp argument and returns the socket path. It
// accepts "unix:PATH" or a bare path, plus the QEMU options that describe
// what this server always does anyway (",server", ",server=on", ",nowait",
// ",wait=off"), so QEMU command lines keep working.
func ParseAddress(addr string) (string, error) {
	rest, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		if scheme, _, found := strings.Cut(addr, ":"); found && !strings.Contains(scheme, "/") {
			return "", fmt.Errorf("QMP address %q: only unix:PATH is supported", addr)
		}
		rest = addr
	}
	parts := strings.Split(rest, ",")
	for _, o := range parts[1:] {
		switch o {
		case "server", "server=on", "nowait", "wait=off":
		default:
			return "", fmt.Errorf("QMP address %q: unsupported option %q", addr, o)
		}
	}
	if parts[0] == "" {
		return "", fmt.Errorf("QMP address %q: empty socket path", addr)
	}
	return parts[0], nil
}

// Listen creates a unix socket (mode 0600) at addr (see ParseAddress) and
// serves clients on it until ctx is cancelled or the server is closed. A
// stale socket file left by a dead process is replaced; a socket on which
// another process accepts connections is refused. Several listeners may
// be active at once.
func (s *Server) Listen(ctx context.Context, addr string) error {
	path, err := ParseAddress(addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("listen on QMP socket %s: server closed", path)
	}
	ln, info, err := bindUnix(path)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &listener{path: path, ln: ln, info: info, cancel: cancel}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		l.close()
		return fmt.Errorf("listen on QMP socket %s: server closed", path)
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		<-lctx.Done()
		l.close()
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	go func() {
		defer s.wg.Done()
		s.acceptLoop(lctx, l)
	}()
	s.log.Info().Str("socket", path).Msg("QMP listening")
	return nil
}

func (s *Server) acceptLoop(ctx context.Context, l *listener) {
	backoff := 5 * time.Millisecond
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Out of descriptors and the like: wait and retry, as
			// net/http does, rather than give up the socket.
			s.log.Warn().Err(err).Str("socket", l.path).Msg("QMP accept failed")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		c, err := s.addConn(ctx, nc, l.path)
		var full *tooManyError
		if errors.As(err, &full) {
			s.refuse(nc, l.path, full)
			continue
		}
		if err != nil {
			nc.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			c.serve()
		}()
	}
}

// close stops accepting and removes the socket file if it is still ours.
func (l *listener) close() {
	l.ln.Close()
	if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.info) {
		os.Remove(l.path)
	}
}

// bindUnix creates the listening socket. It is bound in a private
// directory, given mode 0600 there and then renamed into place, so it is
// never reachable with looser permissions and a stale file at path is
// replaced atomically.
func bindUnix(path string) (*net.UnixListener, os.FileInfo, error) {
	stale, err := checkExisting(path)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Dir(path)
	tmp, err := os.MkdirTemp(dir, ".qmp")
	if err != nil {
		return nil, nil, fmt.Errorf("listen on QMP socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	bindPath := filepath.Join(tmp, "s")
	if len(bindPath) >= 108 {
		// sun_path is 108 bytes: bind in place and tighten the mode at
		// once. The socket is briefly as open as the umask allows.
		bindPath = path
		if stale {
			if err := os.Remove(path); err != nil {
				return nil, nil, fmt.Errorf("listen on QMP socket %s: remove stale socket: %w", path, err)
			}
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bindPath, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on QMP socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		ln.Close()
		os.Remove(bindPath)
		return nil, nil, fmt.Errorf("listen on QMP socket %s: %w", path, err)
	}
	if err := os.Chmod(bindPath, 0o600); err != nil {
		return fail(err)
	}
	if bindPath != path {
		if err := os.Rename(bindPath, path); err != nil {
			return fail(err)
		}
	}
	info, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return ln, info, nil
}

// checkExisting refuses a path that is not a socket or that a live
// process accepts connections on; it reports a dead socket as stale.
func checkExisting(path string) (stale bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listen on QMP socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return false, fmt.Errorf("listen on QMP socket %s: the path exists and is not a socket", path)
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.Dial("unix", path)
	if err == nil {
		c.Close()
		return false, fmt.Errorf("listen on QMP socket %s: another process is accepting connections on it", path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true, nil
	}
	return false, fmt.Errorf("listen on QMP socket %s: probe existing socket: %w", path, err)
}
