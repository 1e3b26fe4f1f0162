package serial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestInputBounded(t *testing.T) {
	u, _, _ := newTest(t)
	p := bytes.Repeat([]byte{'i'}, RxFIFOSize+904)
	if n := u.Input(p); n != RxFIFOSize {
		t.Fatalf("Input(%d bytes) = %d, want %d", len(p), n, RxFIFOSize)
	}
	if n := u.Input([]byte("more")); n != 0 {
		t.Fatalf("Input into a full FIFO = %d, want 0", n)
	}
	if lsr := in(u, regLSR); lsr&lsrOE != 0 {
		t.Errorf("LSR %#02x: refused input must not flag an overrun", lsr)
	}
	in(u, regData)
	if n := u.Input([]byte("more")); n != 1 {
		t.Errorf("Input after one read = %d, want 1", n)
	}
}

// TestInputWhileReading feeds a long stream from an input goroutine while a
// "vCPU" goroutine polls LSR and reads RBR, and a second one churns other
// registers. Every byte must arrive once, in order.
func TestInputWhileReading(t *testing.T) {
	u, _, _ := newTest(t)
	const total = 50_000
	want := make([]byte, total)
	for i := range want {
		want[i] = byte(i*7 + i/251)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg, churn sync.WaitGroup
	wg.Add(2)
	go func() { // input goroutine, in uneven chunks
		defer wg.Done()
		for off := 0; off < total; {
			end := min(total, off+1+off%977)
			if _, err := u.InputWait(ctx, want[off:end]); err != nil {
				t.Errorf("InputWait: %v", err)
				return
			}
			off = end
		}
	}()
	got := make([]byte, 0, total)
	go func() { // vCPU 0 reads
		defer wg.Done()
		for len(got) < total && ctx.Err() == nil {
			if in(u, regLSR)&lsrDR != 0 {
				got = append(got, in(u, regData))
			}
		}
	}()
	stop := make(chan struct{})
	churn.Add(1)
	go func() { // vCPU 1 does unrelated register traffic
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			out(u, regSCR, byte(i))
			in(u, regIIR)
			out(u, regIER, byte(i)&ierMS)
		}
	}()
	wg.Wait()
	close(stop)
	churn.Wait()
	if !bytes.Equal(got, want) {
		t.Fatalf("received %d bytes, first difference at %d", len(got), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestInputWaitStops(t *testing.T) {
	u, _, _ := newTest(t)
	u.Input(make([]byte, RxFIFOSize))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	n, err := u.InputWait(ctx, []byte("abc"))
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("InputWait on a full FIFO = %d, %v; want 0, deadline exceeded", n, err)
	}
	done := make(chan error)
	go func() {
		_, err := u.InputWait(t.Context(), []byte("abc"))
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	in(u, regData) // frees one byte: progress, but not enough
	u.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("InputWait after Close = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("InputWait did not return after Close")
	}
	if got := u.State().RxFIFO; got[len(got)-1] != 'a' {
		t.Errorf("the freed byte was not used: last byte %q", got[len(got)-1])
	}
}

func TestOutputOrder(t *testing.T) {
	u, _, o := newTest(t)
	const n = OutputBufferSize / 2 // cannot overflow, however slow the writer
	want := make([]byte, n)
	for i := range want {
		want[i] = byte(i % 253)
		out(u, regData, want[i])
	}
	if err := u.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := o.bytes(); !bytes.Equal(got, want) {
		t.Fatalf("output differs from input at byte %d (len %d)", firstDiff(got, want), len(got))
	}
	if d := u.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0", d)
	}
}

func TestOutputOrderPerVCPU(t *testing.T) {
	u, _, o := newTest(t)
	const vcpus, each = 4, 4000 // 16000 bytes < OutputBufferSize: no drops
	var wg sync.WaitGroup
	for v := range vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// High nibble: vCPU; low nibble: sequence mod 16.
				u.PortOut(COM1Base, []byte{byte(v<<4 | i%16)})
			}
		}()
	}
	wg.Wait()
	if err := u.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := o.bytes()
	if len(got) != vcpus*each {
		t.Fatalf("%d bytes written, want %d", len(got), vcpus*each)
	}
	next := make([]int, vcpus)
	for i, b := range got {
		v := int(b >> 4)
		if int(b&15) != next[v]%16 {
			t.Fatalf("byte %d: vCPU %d's byte %d out of order", i, v, next[v])
		}
		next[v]++
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	buf     syncBuf
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.buf.Write(p)
}

func TestDroppedWhenWriterBlocks(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
	u := New(COM1IRQ, nil, w)
	out(u, regData, 0)
	<-w.entered // the writer now holds byte 0 and is stuck
	const total = OutputBufferSize + 10_000
	start := time.Now()
	for i := 1; i < total; i++ {
		out(u, regData, byte(i))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("transmitting into a blocked writer took %v", d)
	}
	// Everything past the buffer is dropped.
	if got, want := u.Dropped(), uint64(total-1-OutputBufferSize); got != want {
		t.Errorf("Dropped() = %d, want %d", got, want)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := u.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush with a blocked writer = %v, want deadline exceeded", err)
	}
	close(w.release)
	if err := u.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := w.buf.bytes()
	if len(got) != OutputBufferSize+1 {
		t.Errorf("%d bytes written, want %d", len(got), OutputBufferSize+1)
	}
	for i, b := range got {
		if b != byte(i) {
			t.Fatalf("written byte %d = %d: not the prefix the guest sent", i, b)
		}
	}
	// Output flows again once the writer keeps up.
	out(u, regData, 'Z')
	if err := u.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := w.buf.bytes(); got[len(got)-1] != 'Z' {
		t.Error("output did not resume after the writer unblocked")
	}
	closeAndJoin(t, u)
}

func TestCloseWithBlockedWriter(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
	u := New(COM1IRQ, nil, w)
	out(u, regData, 'a')
	<-w.entered
	for range 10 {
		out(u, regData, 'b')
	}
	closed := make(chan struct{})
	go func() {
		u.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a blocked writer")
	}
	if err := u.Flush(t.Context()); err == nil {
		// The writer still holds 'a': Flush must not claim success
		// before it returns, and must not wait forever either.
		t.Error("Flush succeeded while the writer is blocked and the UART closed")
	}
	close(w.release)
	closeAndJoin(t, u)
	if got := string(w.buf.bytes()); got != "a" {
		t.Errorf("written %q, want just the byte in flight", got)
	}
	if d := u.Dropped(); d != 10 {
		t.Errorf("Dropped() = %d, want the 10 buffered bytes", d)
	}
	out(u, regData, 'c')
	if d := u.Dropped(); d != 11 {
		t.Errorf("Dropped() after a transmit on a closed UART = %d, want 11", d)
	}
	if err := u.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

type failingWriter struct{ calls int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	return 1, fmt.Errorf("write /dev/pts/9: input/output error")
}

func TestWriteErrorSticky(t *testing.T) {
	u := New(COM1IRQ, nil, &failingWriter{})
	t.Cleanup(func() { closeAndJoin(t, u) })
	for _, b := range []byte("hello") {
		out(u, regData, b)
	}
	err := u.Flush(t.Context())
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("input/output error")) {
		t.Fatalf("Flush = %v, want the write error", err)
	}
	if d := u.Dropped(); d == 0 || d > 4 {
		t.Errorf("Dropped() = %d, want the unwritten bytes (1..4)", d)
	}
	if err := u.Flush(t.Context()); err == nil {
		t.Error("write error not sticky")
	}
}

func TestFlushEmpty(t *testing.T) {
	u, _, _ := newTest(t)
	if err := u.Flush(t.Context()); err != nil {
		t.Errorf("Flush with nothing sent = %v", err)
	}
	u.Close()
	<-u.out.exited
	if err := u.Flush(t.Context()); err != nil {
		t.Errorf("Flush after Close with nothing pending = %v", err)
	}
}
