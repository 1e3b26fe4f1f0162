package qmp

import (
	"io"
	"sort"
	"testing"
	"time"
)

// BenchmarkQueryStatus measures sequential query-status round trips on one
// unix-socket connection, as the QEMU baseline did (2,300-5,000 calls/s
// there), and reports p50/p99 latency.
func BenchmarkQueryStatus(b *testing.B) {
	_, sock, _ := newTestServer(b, ServerConfig{Version: VersionTriple{9, 2, 0}, Package: "bench"})
	c, r, _ := dialGreetTB(b, sock)
	defer c.Close()
	io.WriteString(c, `{"execute":"qmp_capabilities"}`)
	if _, err := r.next(5 * time.Second); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	cmd := []byte(`{"execute":"query-status"}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.Write(cmd); err != nil {
			b.Fatal(err)
		}
		if _, err := r.next(5 * time.Second); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
