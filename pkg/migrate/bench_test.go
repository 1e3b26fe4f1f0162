package migrate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/machine"
)

// BenchmarkBulkRAM migrates a guest of 256 MiB holding 200 MiB of
// incompressible data over a unix socket in this process, without KVM: the
// copy path of pre-copy alone (frame, checksum, socket, page store), in
// Gbit/s. "fresh" destination RAM is what a real destination has: every
// page is faulted in (and zeroed by the kernel) as it arrives, which on
// this kind of host costs more than the whole copy path ("prefaulted").
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
	for _, prefault := range []bool{false, true} {
		b.Run(map[bool]string{false: "fresh", true: "prefaulted"}[prefault], func(b *testing.B) {
			dir := b.TempDir()
			var total float64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				dst := newFakeVM(size, machine.StateInMigrate)
				if prefault {
					d, _ := dst.ram.Slice(0, size)
					for k := 0; k < len(d); k += pageSize {
						d[k] = 1
					}
				}
				src.mu.Lock()
				src.state = machine.StatePaused
				src.mu.Unlock()
				sm := New(Config{VM: src, Log: zerolog.Nop()})
				dm := New(Config{VM: dst, Log: zerolog.Nop(), Incoming: true})
				if err := sm.SetParameters(func(p *Parameters) { p.MaxBandwidth = 0 }); err != nil {
					b.Fatal(err)
				}
				uri := "unix:" + filepath.Join(dir, fmt.Sprintf("m%d.sock", i))
				ctx := context.Background()
				if err := dm.Incoming(ctx, uri); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := sm.Migrate(ctx, uri); err != nil {
					b.Fatal(err)
				}
				if _, err := sm.Wait(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := dm.Wait(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				in := sm.Info()
				if in.Status != StatusCompleted {
					b.Fatalf("migration %s: %s", in.Status, in.ErrorDesc)
				}
				total += float64(*in.TotalTime)
				sm.Close()
				dm.Close()
				dst.ram.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(filled)*8/1e9/(total/float64(b.N)/1000), "Gbit/s")
		})
	}
}
