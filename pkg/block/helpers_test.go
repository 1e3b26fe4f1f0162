package block

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCtx returns a context that ends well before the test binary's
// deadline, so a hang shows up as a failure naming the test.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tempImage creates a zero-filled image of size bytes.
func tempImage(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// pattern returns n bytes that differ by seed and position.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// unaligned returns an n-byte slice that starts one byte past an aligned
// address, the worst case for O_DIRECT.
func unaligned(n int) []byte {
	return alignedBuffer(n+1, 4096)[1:]
}

func openDrive(t testing.TB, spec string, opts OpenOptions) *Drive {
	t.Helper()
	s, err := ParseDriveSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDrive(testCtx(t), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: data differs at byte %d (len %d vs %d)", what, i, len(got), len(want))
	}
}
