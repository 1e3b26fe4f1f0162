package block

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseFaultRule(t *testing.T) {
	tests := []struct {
		in   string
		want FaultRule
	}{
		{"op=flush,errno=EIO,count=1,delay-ms=0", FaultRule{Op: OpFlush, Errno: syscall.EIO, Count: 1}},
		{"operation=write,errno=enospc", FaultRule{Op: OpWrite, Errno: syscall.ENOSPC}},
		{"op=read,errno=5,count=3", FaultRule{Op: OpRead, Errno: syscall.EIO, Count: 3}},
		{"op=inactivate,delay-ms=250", FaultRule{Op: OpInactivate, Delay: 250 * time.Millisecond}},
		{"op=activate,errno=EPERM,delay-ms=10", FaultRule{Op: OpActivate, Errno: syscall.EPERM, Delay: 10 * time.Millisecond}},
	}
	for _, tt := range tests {
		got, err := ParseFaultRule(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseFaultRule(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		again, err := ParseFaultRule(got.String())
		if err != nil || again != got {
			t.Errorf("round trip via %q = %+v, %v", got.String(), again, err)
		}
	}
	for _, bad := range []struct{ in, want string }{
		{"errno=EIO", "op is required"},
		{"op=trim,errno=EIO", "unknown operation"},
		{"op=read", "needs an errno, a delay or both"},
		{"op=read,errno=EWHAT", "not a known error name"},
		{"op=read,errno=0", "not a known error number"},
		{"op=read,errno=EIO,count=-1", "count"},
		{"op=read,errno=EIO,delay-ms=x", "delay-ms"},
		{"op=read,errno=EIO,color=red", "unknown key"},
		{"op=read,op=write,errno=EIO", "given twice"},
		{"op=read,errno", "not key=value"},
		{"op=read,errno=EIO,delay-ms=4000000", "out of range"},
	} {
		if _, err := ParseFaultRule(bad.in); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseFaultRule(%q) error = %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestFaultsCountAndOrder(t *testing.T) {
	ctx := context.Background()
	f := &faults{}
	f.add(FaultRule{Op: OpWrite, Errno: syscall.ENOSPC, Count: 2})
	f.add(FaultRule{Op: OpWrite, Errno: syscall.EIO})
	for i, want := range []syscall.Errno{syscall.ENOSPC, syscall.ENOSPC, syscall.EIO, syscall.EIO} {
		err := f.apply(ctx, OpWrite, time.Second)
		if !errors.Is(err, want) {
			t.Fatalf("write %d: %v, want %v", i, err, want)
		}
		var ie *InjectedError
		if !errors.As(err, &ie) || ie.Op != OpWrite {
			t.Fatalf("write %d: %v is not an InjectedError for write", i, err)
		}
	}
	if err := f.apply(ctx, OpRead, time.Second); err != nil {
		t.Fatalf("read hit a write rule: %v", err)
	}
	if got := f.list(); len(got) != 1 || got[0].Errno != syscall.EIO {
		t.Fatalf("rules left = %+v, want the EIO one", got)
	}
	f.clear()
	if err := f.apply(ctx, OpWrite, time.Second); err != nil {
		t.Fatalf("after clear: %v", err)
	}
}

func TestFaultsDelay(t *testing.T) {
	ctx := context.Background()
	f := &faults{}
	f.add(FaultRule{Op: OpRead, Delay: 50 * time.Millisecond, Count: 1})
	start := time.Now()
	if err := f.apply(ctx, OpRead, time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("delay rule returned after %s", d)
	}
	f.add(FaultRule{Op: OpRead, Delay: time.Minute})
	start = time.Now()
	err := f.apply(ctx, OpRead, 50*time.Millisecond)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrIO) {
		t.Fatalf("a delay beyond the timeout gave %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	if !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Fatalf("error text %q", err)
	}
}
