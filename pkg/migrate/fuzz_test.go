package migrate

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/machine"
)

// validStream returns a complete saved stream of a small fake VM, the seed
// the fuzzer mutates.
func validStream(t testing.TB) []byte {
	t.Helper()
	src := newFakeVM(testRAM, machine.StateRunning, &fakeDrive{name: "disk0", active: true})
	for gpa := uint64(0); gpa < 64*pageSize; gpa += pageSize {
		src.touch(gpa, byte(gpa/pageSize)|1)
	}
	m := New(Config{VM: src, Log: zerolog.Nop()})
	defer m.Close()
	path := filepath.Join(t.TempDir(), "seed.state")
	if err := m.Migrate(context.Background(), "file:"+path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := m.Wait(ctx); err != nil || st != StatusCompleted {
		t.Fatalf("seed stream: %v %v %+v", st, err, m.Info())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzIncomingStream feeds arbitrary bytes to a destination as a saved
// migration file. Whatever the input, the destination must end in a final
// status without panicking, and a guest that did not arrive intact must
// not run: anything but completed leaves it in inmigrate.
func FuzzIncomingStream(f *testing.F) {
	seed := validStream(f)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte("VMMDMIG\x00"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "in.state")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		vm := newFakeVM(testRAM, machine.StateInMigrate, &fakeDrive{name: "disk0"})
		defer vm.ram.Close()
		m := New(Config{VM: vm, Log: zerolog.Nop(), Incoming: true, Autostart: true})
		defer m.Close()
		if err := m.Incoming(context.Background(), "file:"+path); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := m.Wait(ctx)
		if err != nil {
			t.Fatalf("destination still %s after 10 s", st)
		}
		switch st {
		case StatusCompleted:
			if vm.State() != machine.StateRunning {
				t.Fatalf("completed but %s", vm.State())
			}
		case StatusFailed:
			if vm.State() != machine.StateInMigrate {
				t.Fatalf("failed but the VM left inmigrate: %s", vm.State())
			}
			if m.Info().ErrorDesc == "" {
				t.Fatal("failed without a reason")
			}
		default:
			t.Fatalf("final status %s", st)
		}
		if n := vm.violations.Load(); n != 0 {
			t.Fatalf("%d starts with an inactive drive", n)
		}
	})
}

// FuzzParseURI: any string gives a URI or an error naming the problem,
// never a panic, and an accepted URI prints back to what it parsed.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"unix:/run/x.sock", "tcp:127.0.0.1:4444", "tcp:[::1]:1", "file:/tmp/vm.state",
		"exec:cat", "", ":", "tcp:", "unix:", "file:a,offset=3", "tcp:host"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if u.String() != s {
			t.Fatalf("ParseURI(%q) = %q", s, u.String())
		}
	})
}
