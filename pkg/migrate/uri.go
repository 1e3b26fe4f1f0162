package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// Transport kinds a migration URI can name.
const (
	schemeUnix = "unix"
	schemeTCP  = "tcp"
	schemeFile = "file"
)

// URI is a parsed migration address.
type URI struct {
	Scheme string // unix, tcp or file
	Addr   string // socket path, host:port or file path
}

// String returns the address as written: scheme:address.
func (u URI) String() string { return u.Scheme + ":" + u.Addr }

// returnPath reports whether the transport carries the destination's
// answers back (sockets do; a file does not).
func (u URI) returnPath() bool { return u.Scheme != schemeFile }

// ParseURI parses unix:PATH, tcp:HOST:PORT and file:PATH, with QEMU's error
// text for an unknown scheme.
func ParseURI(s string) (URI, error) {
	scheme, addr, ok := strings.Cut(s, ":")
	if !ok {
		return URI{}, fmt.Errorf("unknown migration protocol: %s", s)
	}
	u := URI{Scheme: scheme, Addr: addr}
	switch scheme {
	case schemeUnix, schemeFile:
		if addr == "" {
			return URI{}, fmt.Errorf("migration URI %q: the %s path is empty", s, scheme)
		}
		if strings.ContainsRune(addr, 0) {
			return URI{}, fmt.Errorf("migration URI %q: the path contains a NUL byte", s)
		}
		if scheme == schemeFile && strings.Contains(addr, ",") {
			return URI{}, fmt.Errorf("migration URI %q: file options (offset=) are not supported", s)
		}
	case schemeTCP:
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return URI{}, fmt.Errorf("migration URI %q: want tcp:HOST:PORT: %w", s, err)
		}
		if port == "" {
			return URI{}, fmt.Errorf("migration URI %q: the port is missing", s)
		}
		_ = host // empty host means every address when listening
	default:
		return URI{}, fmt.Errorf("unknown migration protocol: %s", s)
	}
	return u, nil
}

// unixSendBuffer is the send buffer asked for on a unix migration socket.
const unixSendBuffer = 4 << 20

// dial opens the outgoing side: a connection, or a new file for a save.
func dial(ctx context.Context, u URI) (io.ReadWriteCloser, error) {
	switch u.Scheme {
	case schemeFile:
		f, err := os.OpenFile(u.Addr, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create migration file: %w", err)
		}
		return f, nil
	case schemeUnix, schemeTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, u.Scheme, u.Addr)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", u, err)
		}
		if uc, ok := c.(*net.UnixConn); ok {
			// A unix socket's send buffer bounds the data in flight
			// (the default, ~208 KiB, is a fifth of one RAM section): with
			// it the source and the destination take turns, one context
			// switch per ~200 KiB. 4 MiB (the kernel clamps it to
			// net.core.wmem_max) took 200 MiB from 12-14 to 19-21 Gbit/s
			// here. TCP keeps the kernel's autotuning, which a fixed size
			// would turn off.
			if err := uc.SetWriteBuffer(unixSendBuffer); err != nil {
				return nil, fmt.Errorf("set the send buffer of %s: %w", u, err)
			}
		}
		return c, nil
	}
	return nil, fmt.Errorf("unknown migration protocol: %s", u)
}

// listener waits for the one incoming connection of a migration.
type listener struct {
	u  URI
	ln net.Listener // nil for files
}

// listen prepares the incoming side. A unix socket path that exists but
// has no listener (left over by a crash) is replaced; a live one is not.
func listen(ctx context.Context, u URI) (*listener, error) {
	switch u.Scheme {
	case schemeFile:
		if _, err := os.Stat(u.Addr); err != nil {
			return nil, fmt.Errorf("open migration file: %w", err)
		}
		return &listener{u: u}, nil
	case schemeUnix:
		if err := removeStaleSocket(ctx, u.Addr); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, u.Scheme, u.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", u, err)
	}
	if u.Scheme == schemeUnix {
		// Only the operator who runs vmmd may feed it a guest.
		if err := os.Chmod(u.Addr, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen on %s: %w", u, err)
		}
	}
	return &listener{u: u, ln: ln}, nil
}

// accept returns the first connection (or opens the file) and stops
// listening: a migration has exactly one source.
func (l *listener) accept(ctx context.Context) (io.ReadWriteCloser, error) {
	if l.ln == nil {
		f, err := os.Open(l.u.Addr)
		if err != nil {
			return nil, fmt.Errorf("open migration file: %w", err)
		}
		return f, nil
	}
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	c, err := l.ln.Accept()
	l.close()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for the migration source on %s: %w", l.u, ctx.Err())
		}
		return nil, fmt.Errorf("wait for the migration source on %s: %w", l.u, err)
	}
	return c, nil
}

func (l *listener) close() {
	if l.ln != nil {
		l.ln.Close()
		if l.u.Scheme == schemeUnix {
			_ = os.Remove(l.u.Addr)
		}
	}
}

// removeStaleSocket deletes path if it is a unix socket nobody listens on.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen on unix:%s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("listen on unix:%s: the path exists and is not a socket", path)
	}
	var d net.Dialer
	if c, err := d.DialContext(ctx, "unix", path); err == nil {
		c.Close()
		return fmt.Errorf("listen on unix:%s: another process is listening there", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("listen on unix:%s: remove stale socket: %w", path, err)
	}
	return nil
}
