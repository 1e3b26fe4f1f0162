package qmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Defaults for ServerConfig fields left zero.
const (
	DefaultQueueLen     = 1024
	DefaultWriteTimeout = 5 * time.Second
	// DefaultMaxConns bounds the clients served at once. Orchestration
	// holds one or two connections and operators a few more; the bound is
	// there so that a runaway script cannot make the daemon hold
	// thousands of stalled connections (each costs its buffers).
	DefaultMaxConns = 128
)

// VersionTriple is QAPI's VersionTriple. Field order is QAPI's, which
// decides QEMU's output order where member names share a hash bucket.
type VersionTriple struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Micro int `json:"micro"`
}

// VersionInfo is QAPI's VersionInfo: the greeting's "version" member and
// the reply of query-version.
type VersionInfo struct {
	QEMU    VersionTriple `json:"qemu"`
	Package string        `json:"package"`
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Version is the QEMU version the server claims in its greeting.
	Version VersionTriple
	// Package is the greeting's "package" member, e.g. "vmmd 0.1.0".
	Package string
	// Logger receives connection events (info), dropped clients (warn),
	// handler panics (error) and one line per command (debug).
	Logger zerolog.Logger
	// QueueLen bounds each connection's queue of unsent replies and
	// events. Replies may use half of it, then the server stops reading
	// from that client until it catches up; an event that finds the queue
	// full disconnects the client.
	QueueLen int
	// WriteTimeout bounds each write to a client; a client that does not
	// read for that long (at least 3/4 of it: the deadline is only moved
	// once a quarter of it has passed) is disconnected.
	WriteTimeout time.Duration
	// MaxConns bounds the clients connected at once (DefaultMaxConns if
	// zero). One more is told why in an error line where the greeting
	// would be, answered the same to its first command, and closed.
	MaxConns int
}

// Handler executes one command. ctx is cancelled when the client goes away
// or the server closes; a handler must return soon after, because Close
// waits for it. The result is encoded with encoding/json and sent as
// "return" (nil means {}). An *Error return chooses the error class; any
// other error is sent as GenericError with its text.
type Handler func(ctx context.Context, args Args) (any, error)

type command struct {
	name    string
	schema  *ArgSchema
	handler Handler
}

// Server is a QMP server: it speaks the protocol and dispatches commands
// registered with Register; it knows nothing about what they do.
type Server struct {
	cfg      ServerConfig
	log      zerolog.Logger
	greeting []byte

	cmdMu sync.RWMutex
	cmds  map[string]*command
	order []string

	// big admits one connection at a time to hold a message in progress
	// larger than bigMessage: QEMU's limits let each client make the
	// server buffer 64 MiB, which costs several times that while it grows.
	big chan struct{}

	mu        sync.Mutex
	closed    bool
	refused   refusals
	refusing  map[net.Conn]struct{} // being told they are one too many
	nextConn  uint64
	conns     map[*conn]struct{}
	listeners map[*listener]struct{}
	wg        sync.WaitGroup
}

// Built-in command names.
const (
	cmdCapabilities  = "qmp_capabilities"
	cmdQueryCommands = "query-commands"
)

// NewServer returns a server with the built-in commands qmp_capabilities
// and query-commands registered.
func NewServer(cfg ServerConfig) *Server {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With().Str("component", "qmp").Logger(),
		cmds:      map[string]*command{},
		big:       make(chan struct{}, 1),
		conns:     map[*conn]struct{}{},
		listeners: map[*listener]struct{}{},
	}
	s.greeting = s.buildGreeting()
	// The schemas are fixed and valid, so registration cannot fail.
	_ = s.Register(cmdCapabilities, ArgSchema{Members: []Arg{{
		Name: "enable", Type: TypeArray, Optional: true,
		Elem: &Arg{Type: TypeEnum, Values: []string{"oob"}},
	}}}, nil)
	_ = s.Register(cmdQueryCommands, ArgSchema{}, s.queryCommands)
	return s
}

// Version returns what the greeting announces, for query-version.
func (s *Server) Version() VersionInfo {
	return VersionInfo{QEMU: s.cfg.Version, Package: s.cfg.Package}
}

func (s *Server) buildGreeting() []byte {
	v := s.Version()
	ver := objValue(
		member{"qemu", objValue(
			member{"major", intValue(int64(v.QEMU.Major))},
			member{"minor", intValue(int64(v.QEMU.Minor))},
			member{"micro", intValue(int64(v.QEMU.Micro))},
		)},
		member{"package", strValue(v.Package)},
	)
	// No "oob": out-of-band execution is not implemented.
	g := objValue(member{"QMP", objValue(
		member{"version", ver},
		member{"capabilities", &value{kind: kArray}},
	)})
	return append(appendQEMU(nil, g), '\r', '\n')
}

// Register adds a command. The arguments are checked against schema before
// handler runs, with QEMU's error texts; the schema must not be changed
// afterwards. Names are unique; the built-ins qmp_capabilities and
// query-commands cannot be replaced. Commands may be registered while the
// server runs.
func (s *Server) Register(name string, schema ArgSchema, handler Handler) error {
	if name == "" {
		return errors.New("register QMP command: empty name")
	}
	if err := schema.check(name); err != nil {
		return fmt.Errorf("register QMP command %s: %w", name, err)
	}
	if handler == nil && name != cmdCapabilities {
		return fmt.Errorf("register QMP command %s: nil handler", name)
	}
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	if _, dup := s.cmds[name]; dup {
		return fmt.Errorf("register QMP command %s: already registered", name)
	}
	s.cmds[name] = &command{name: name, schema: &schema, handler: handler}
	s.order = append(s.order, name)
	return nil
}

// Commands returns the registered command names (built-ins included) in
// registration order.
func (s *Server) Commands() []string {
	s.cmdMu.RLock()
	defer s.cmdMu.RUnlock()
	return append([]string(nil), s.order...)
}

func (s *Server) lookup(name string) *command {
	s.cmdMu.RLock()
	defer s.cmdMu.RUnlock()
	return s.cmds[name]
}

// commandInfo is QAPI's CommandInfo.
type commandInfo struct {
	Name string `json:"name"`
}

// queryCommands lists commands newest first, as QEMU's query-commands does
// (it prepends while walking its table in registration order).
func (s *Server) queryCommands(context.Context, Args) (any, error) {
	names := s.Commands()
	out := make([]commandInfo, len(names))
	for i, n := range names {
		out[len(names)-1-i] = commandInfo{Name: n}
	}
	return out, nil
}

// Broadcast sends an event to every connection that has completed
// capabilities negotiation, stamped with t. data, if not nil, is encoded
// with encoding/json as the "data" member. It never blocks: a client whose
// queue is full is disconnected.
func (s *Server) Broadcast(name string, data any, t time.Time) {
	ev := objValue(
		member{"event", strValue(name)},
		member{"timestamp", objValue(
			member{"seconds", intValue(t.Unix())},
			member{"microseconds", intValue(int64(t.Nanosecond() / 1000))},
		)},
	)
	if data != nil {
		d, err := fromGo(data)
		if err != nil {
			s.log.Error().Err(err).Str("event", name).Msg("event dropped: data cannot be encoded")
			return
		}
		ev.obj = append(ev.obj, member{"data", d})
	}
	line := append(appendQEMU(nil, ev), '\r', '\n')
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.sendEvent(line)
	}
	s.log.Debug().Str("event", name).Int("clients", len(conns)).Msg("event")
}

// ServeConn runs the protocol on one connection until the client leaves,
// the connection fails, ctx is cancelled or the server closes. It returns
// once every goroutine it started has finished.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	c, err := s.addConn(ctx, nc, "")
	if err != nil {
		nc.Close()
		return err
	}
	defer s.wg.Done()
	c.serve()
	return nil
}

// addConn registers a connection and counts it in s.wg; the caller must
// run c.serve and then call s.wg.Done.
func (s *Server) addConn(ctx context.Context, nc net.Conn, where string) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("serve QMP connection: server closed")
	}
	if len(s.conns) >= s.cfg.MaxConns {
		return nil, &tooManyError{max: s.cfg.MaxConns}
	}
	s.nextConn++
	c := newConn(ctx, s, nc, s.nextConn, where)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c, nil
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops every listener, ends every connection (flushing what is
// already queued, within WriteTimeout) and waits for all goroutines,
// command handlers included. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	ls := make([]*listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.cancel()
	}
	for _, c := range cs {
		c.cancel()
	}
	s.mu.Lock()
	for nc := range s.refusing {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
