package serial

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// busyState drives u into a state where every field differs from power-on.
func busyState(u *UART) {
	out(u, regLCR, lcrDLAB)
	out(u, regData, 0x01)
	out(u, regIER, 0x02)
	out(u, regLCR, 0x1b)
	out(u, regIIR, 0xc7)
	out(u, regSCR, 0x5a)
	out(u, regIER, ierMask)
	overrun(u) // OE, RDA, THRE, modem deltas
	for range RxFIFOSize - 3 {
		in(u, regData) // leave 3 bytes, not at the ring's start
	}
	in(u, regIIR) // RLS reported, not acknowledged
	out(u, regMCR, mcrRTS|mcrOut1)
}

func TestStateRoundTrip(t *testing.T) {
	src, _, _ := newTest(t)
	busyState(src)
	src.Input([]byte("hi"))
	st := src.State()
	fresh := New(COM1IRQ, nil, nil)
	t.Cleanup(func() { closeAndJoin(t, fresh) })
	if reflect.DeepEqual(st, fresh.State()) {
		t.Fatal("busy state equals power-on state: the test proves nothing")
	}
	if want := []byte("xxxhi"); !bytes.Equal(st.RxFIFO, want) {
		t.Fatalf("RxFIFO = %q, want %q", st.RxFIFO, want)
	}
	dst, dstIRQ, _ := newTest(t)
	if err := dst.SetState(st); err != nil {
		t.Fatalf("SetState: %v", err)
	}
	if got := dst.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, st)
	}
	if n := dstIRQ.pulses(t); n != 0 {
		t.Errorf("SetState pulsed the IRQ line %d times", n)
	}
	// The state is a copy: changing it must not reach the UART.
	st.RxFIFO[0] = '!'
	if dst.State().RxFIFO[0] == '!' {
		t.Error("State shares its FIFO slice with the UART")
	}
	// Both must now behave identically, register by register.
	for i := range 40 {
		reg := i % PortCount
		a, b := in(src, reg), in(dst, reg)
		if a != b {
			t.Fatalf("read %d of register %d: source %#02x, restored %#02x", i, reg, a, b)
		}
	}
}

func TestSetStateRejects(t *testing.T) {
	base := func() State {
		u := New(COM1IRQ, nil, nil)
		defer u.Close()
		return u.State()
	}
	tests := []struct {
		name   string
		modify func(*State)
		want   string
	}{
		{"IER reserved bits", func(s *State) { s.IER = 0x10 }, "IER"},
		{"FCR clear bits", func(s *State) { s.FCR = 0x03 }, "FCR"},
		{"MCR reserved bits", func(s *State) { s.MCR = 0x20 }, "MCR"},
		{"FIFO too long", func(s *State) { s.RxFIFO = make([]byte, RxFIFOSize+1); s.LSR |= lsrDR }, "receive FIFO"},
		{"DR without data", func(s *State) { s.LSR |= lsrDR }, "LSR.DR"},
		{"data without DR", func(s *State) { s.RxFIFO = []byte("a") }, "LSR.DR"},
		{"MSR lines contradict MCR", func(s *State) { s.MSR = 0x10 }, "MSR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, _, _ := newTest(t)
			out(u, regSCR, 0x77)
			before := u.State()
			s := base()
			tc.modify(&s)
			err := u.SetState(s)
			if err == nil {
				t.Fatal("SetState accepted an invalid state")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "restore serial state") {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			if !reflect.DeepEqual(u.State(), before) {
				t.Error("a refused SetState changed the UART")
			}
		})
	}
}

func TestSetStateWakesInputWait(t *testing.T) {
	u, _, _ := newTest(t)
	u.Input(make([]byte, RxFIFOSize))
	done := make(chan int)
	go func() {
		n, _ := u.InputWait(t.Context(), []byte("abc"))
		done <- n
	}()
	s := u.State()
	s.RxFIFO, s.LSR = nil, s.LSR&^lsrDR
	if err := u.SetState(s); err != nil {
		t.Fatal(err)
	}
	if n := <-done; n != 3 {
		t.Errorf("InputWait queued %d bytes, want 3", n)
	}
}
