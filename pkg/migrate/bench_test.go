package migrate

import (
	"context"
	"math/rand/v2"
	"os"

	"golang.org/x/sys/unix"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/vmmd/vmmd/pkg/machine"
)

// BenchmarkBulkRAM migrates a guest of 256 MiB holding 200 MiB of
// incompressible data over a unix socket in this process, without KVM: the
// copy path of pre-copy alone (frame, checksum, socket, page store). It
// reports the bulk rate in Gbit/s.
func BenchmarkBulkRAM(b *testing.B) {
	const size, filled = 256 << 20, 200 << 20
	src := newFakeVM(size, machine.StatePaused)
	r := rand.New(rand.NewPCG(1, 2))
	mem, err := src.ram.Slice(0, filled)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i+8 <= len(mem); i += 8 {
		v := r.Uint64() | 1
		for k := range 8 {
			mem[i+k] = byte(v >> (8 * k))
		}
	}
	dir := b.TempDir()
	var total float64
	for i := 0; b.Loop(); i++ {
		dst := newFakeVM(size, machine.StateInMigrate)
		if os.Getenv("NOHUGE") != "" {
			d, _ := dst.ram.Slice(0, size)
			_ = unix.Madvise(d, unix.MADV_NOHUGEPAGE)
		}
		if os.Getenv("PREFAULT") != "" {
			d, _ := dst.ram.Slice(0, size)
			for k := 0; k < len(d); k += 4096 {
				d[k] = 1
			}
		}
		sm := New(Config{VM: src, Log: zerolog.Nop()})
		dm := New(Config{VM: dst, Log: zerolog.Nop(), Incoming: true, Autostart: false})
		if err := sm.SetParameters(func(p *Parameters) { p.MaxBandwidth = 0 }); err != nil {
			b.Fatal(err)
		}
		uri := "unix:" + filepath.Join(dir, "m"+string(rune('a'+i%26))+".sock")
		ctx := context.Background()
		if err := dm.Incoming(ctx, uri); err != nil {
			b.Fatal(err)
		}
		if err := sm.Migrate(ctx, uri); err != nil {
			b.Fatal(err)
		}
		if _, err := sm.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := dm.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		in := sm.Info()
		if in.Status != StatusCompleted {
			b.Fatalf("migration %s: %s", in.Status, in.ErrorDesc)
		}
		total += float64(*in.TotalTime)
		sm.Close()
		dm.Close()
		src.mu.Lock()
		src.state = machine.StatePaused
		src.mu.Unlock()
	}
	b.ReportMetric(float64(filled)*8/1e9/(total/float64(b.N)/1000), "Gbit/s")
}
