package qmp

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// qemu72 claims the version QEMU 7.2 on the reference machine announces,
// so golden transcripts can be copied from it verbatim.
func qemu72(t testing.TB) ServerConfig {
	return ServerConfig{
		Version: VersionTriple{Major: 7, Minor: 2, Micro: 22},
		Package: "Debian 1:7.2+dfsg-7+deb12u18+b3",
		Logger:  zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
}

// eventTime is the fixed time of events the tests broadcast.
func eventTime() time.Time { return time.Unix(1700000000, 123456000) }

// statusInfo is query-status's reply in QEMU 7.2's shape (QAPI order).
type statusInfo struct {
	Running    bool   `json:"running"`
	Singlestep bool   `json:"singlestep"`
	Status     string `json:"status"`
}

// fakeVM is a minimal run state behind the test commands.
type fakeVM struct {
	mu       sync.Mutex
	running  bool
	srv      *Server
	maxSleep time.Duration // cap on x-slow, set before serving
}

func (vm *fakeVM) status() statusInfo {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.running {
		return statusInfo{Running: true, Status: "running"}
	}
	return statusInfo{Status: "paused"}
}

// setRunning changes state and, like QEMU, announces a change before the
// command's reply.
func (vm *fakeVM) setRunning(run bool, event string) {
	vm.mu.Lock()
	changed := vm.running != run
	vm.running = run
	vm.mu.Unlock()
	if changed {
		vm.srv.Broadcast(event, nil, eventTime())
	}
}

// migrationCapabilities is a subset of QEMU's MigrationCapability enum.
func migrationCapabilities() []string {
	return []string{"xbzrle", "auto-converge", "events", "postcopy-ram", "multifd"}
}

// registerFakes registers the commands the golden transcripts use.
func registerFakes(t testing.TB, s *Server) *fakeVM {
	t.Helper()
	vm := &fakeVM{running: true, srv: s, maxSleep: time.Minute}
	none := ArgSchema{}
	must := func(name string, schema ArgSchema, h Handler) {
		t.Helper()
		if err := s.Register(name, schema, h); err != nil {
			t.Fatal(err)
		}
	}
	// An Object, as vmmd's monitor answers it, in the same member order.
	must("query-status", none, func(context.Context, Args) (any, error) {
		s := vm.status()
		return Object{{Name: "running", Value: s.Running}, {Name: "singlestep", Value: s.Singlestep},
			{Name: "status", Value: s.Status}}, nil
	})
	must("stop", none, func(context.Context, Args) (any, error) {
		vm.setRunning(false, "STOP")
		return nil, nil
	})
	must("cont", none, func(context.Context, Args) (any, error) {
		vm.setRunning(true, "RESUME")
		return nil, nil
	})
	must("query-name", none, func(context.Context, Args) (any, error) { return struct{}{}, nil })
	must("query-version", none, func(context.Context, Args) (any, error) { return s.Version(), nil })
	must("query-kvm", none, func(context.Context, Args) (any, error) {
		return struct {
			Enabled bool `json:"enabled"`
			Present bool `json:"present"`
		}{true, true}, nil
	})
	must("quit", none, func(context.Context, Args) (any, error) {
		s.Broadcast("SHUTDOWN", struct {
			Guest  bool   `json:"guest"`
			Reason string `json:"reason"`
		}{false, "host-qmp-quit"}, eventTime())
		return nil, nil
	})
	must("migrate", ArgSchema{Members: []Arg{
		{Name: "uri", Type: TypeStr},
		{Name: "blk", Type: TypeBool, Optional: true},
		{Name: "inc", Type: TypeBool, Optional: true},
		{Name: "detach", Type: TypeBool, Optional: true},
		{Name: "resume", Type: TypeBool, Optional: true},
	}}, func(_ context.Context, a Args) (any, error) {
		return nil, Errorf(GenericError, "Parameter 'uri' expects a valid migration protocol")
	})
	must("migrate-set-capabilities", ArgSchema{Members: []Arg{{
		Name: "capabilities", Type: TypeArray,
		Elem: &Arg{Type: TypeObject, Object: &ArgSchema{Members: []Arg{
			{Name: "capability", Type: TypeEnum, Values: migrationCapabilities()},
			{Name: "state", Type: TypeBool},
		}}},
	}}}, func(_ context.Context, a Args) (any, error) {
		var in struct {
			Capabilities []struct {
				Capability string `json:"capability"`
				State      bool   `json:"state"`
			} `json:"capabilities"`
		}
		if err := a.Decode(&in); err != nil {
			return nil, err
		}
		return nil, nil
	})
	must("migrate-set-parameters", ArgSchema{Members: []Arg{
		{Name: "announce-initial", Type: TypeSize, Optional: true},
		{Name: "cpu-throttle-initial", Type: TypeUint8, Optional: true},
		{Name: "tls-creds", Type: TypeStrOrNull, Optional: true},
		{Name: "max-bandwidth", Type: TypeSize, Optional: true},
		{Name: "downtime-limit", Type: TypeUint64, Optional: true},
		{Name: "multifd-compression", Type: TypeEnum, Optional: true, Values: []string{"none", "zlib", "zstd"}},
	}}, func(_ context.Context, a Args) (any, error) {
		if d, ok := a.Uint("downtime-limit"); ok && d > 2000000 {
			return nil, Errorf(GenericError, "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms")
		}
		return nil, nil
	})
	must("human-monitor-command", ArgSchema{Members: []Arg{
		{Name: "command-line", Type: TypeStr},
		{Name: "cpu-index", Type: TypeInt, Optional: true},
	}}, func(_ context.Context, a Args) (any, error) {
		cl, _ := a.Str("command-line")
		if cl == "info status" {
			st := vm.status()
			return "VM status: " + st.Status + "\r\n", nil
		}
		return "unknown command: '" + cl + "'\r\n", nil
	})
	must("x-device-error", none, func(context.Context, Args) (any, error) {
		return nil, Errorf(DeviceNotFound, "Device '%s' not found", "virtio0")
	})
	must("x-plain-error", none, func(context.Context, Args) (any, error) {
		return nil, errors.New("something failed")
	})
	must("x-panic", none, func(context.Context, Args) (any, error) {
		panic("handler bug")
	})
	must("x-slow", ArgSchema{Members: []Arg{{Name: "ms", Type: TypeInt}}},
		func(ctx context.Context, a Args) (any, error) {
			ms, _ := a.Int("ms")
			d := max(0, min(time.Duration(ms)*time.Millisecond, vm.maxSleep))
			select {
			case <-time.After(d):
				return ms, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	return vm
}

// newTestServer starts a server with the fake commands on a socket in a
// temporary directory; it is closed when the test ends.
func newTestServer(t testing.TB, cfg ServerConfig) (*Server, string, *fakeVM) {
	t.Helper()
	s := NewServer(cfg)
	vm := registerFakes(t, s)
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	if err := s.Listen(context.Background(), "unix:"+sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, sock, vm
}
