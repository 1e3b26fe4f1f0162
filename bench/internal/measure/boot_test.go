package measure

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func startSh(t *testing.T, script string) *Instance {
	t.Helper()
	in, err := Start(context.Background(), Spec{Path: "sh", Args: []string{"-c", script}, Marker: []byte("GUEST-READY")})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { in.Stop(context.Background()) })
	return in
}

func TestWaitReadyMarkerSplitAcrossWrites(t *testing.T) {
	in := startSh(t, `sleep 0.05; printf 'noise\nGUEST-'; sleep 0.1; echo 'READY tiny'; exec sleep 100`)
	d, err := in.WaitReady(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if d < 150*time.Millisecond {
		t.Errorf("ready after %v, but the marker was only complete after 150 ms of sleeps", d)
	}
	if got := in.ReadyLine(); got != "GUEST-READY tiny" {
		t.Errorf("ReadyLine = %q", got)
	}
	ex := in.Stop(context.Background())
	if ex.Clean || ex.Killed || ex.Status != "signal: terminated" {
		t.Errorf("Stop = %+v, want ended by SIGTERM", ex)
	}
	if again := in.Stop(context.Background()); again != ex {
		t.Errorf("second Stop = %+v, first %+v", again, ex)
	}
}

func TestWaitReadyProcessExitsFirst(t *testing.T) {
	in := startSh(t, `echo boom >&2; exit 3`)
	_, err := in.WaitReady(context.Background(), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("WaitReady error = %v, want exit status 3 and the stderr text", err)
	}
	if ex := in.Stop(context.Background()); ex.Clean || ex.Killed {
		t.Errorf("Stop = %+v, want unclean exit without SIGKILL", ex)
	}
}

func TestWaitReadyMarkerThenExit(t *testing.T) {
	in := startSh(t, `echo GUEST-READY; exit 0`)
	if _, err := in.WaitReady(context.Background(), 10*time.Second); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	<-in.exited // let it exit on its own, before Stop would send SIGTERM
	if ex := in.Stop(context.Background()); !ex.Clean {
		t.Errorf("Stop = %+v, want clean", ex)
	}
}

func TestWaitReadyTimeoutAndCancel(t *testing.T) {
	in := startSh(t, `exec sleep 100`)
	if _, err := in.WaitReady(context.Background(), 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "within 50ms") {
		t.Errorf("WaitReady error = %v, want a timeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := in.WaitReady(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitReady error = %v, want context.Canceled", err)
	}
	// A cancelled context skips the SIGTERM grace period.
	t0 := time.Now()
	ex := in.Stop(ctx)
	if el := time.Since(t0); el > time.Second {
		t.Errorf("Stop with a cancelled context took %v", el)
	}
	if ex.Clean {
		t.Errorf("Stop = %+v, want unclean", ex)
	}
}

// TestStopKillsStubbornGroup checks the SIGKILL fallback and that a helper
// in the VMM's process group does not survive Stop.
func TestStopKillsStubbornGroup(t *testing.T) {
	in := startSh(t, `trap '' TERM; sleep 100 & echo "GUEST-READY $!"; while :; do sleep 0.05; done`)
	if _, err := in.WaitReady(context.Background(), 10*time.Second); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimPrefix(in.ReadyLine(), "GUEST-READY "))
	if err != nil {
		t.Fatalf("helper pid from %q: %v", in.ReadyLine(), err)
	}
	t0 := time.Now()
	ex := in.Stop(context.Background())
	if el := time.Since(t0); el < stopGrace {
		t.Errorf("Stop returned after %v, before the %v grace period", el, stopGrace)
	}
	if !ex.Killed || ex.Status != "signal: killed" {
		t.Errorf("Stop = %+v, want killed", ex)
	}
	// The helper was reparented; give its new parent a moment to reap it.
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(child, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("helper %d in the VMM's process group survived Stop", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartRejectsBadSpec(t *testing.T) {
	if _, err := Start(context.Background(), Spec{Path: "/nonexistent/vmm", Marker: []byte("X")}); err == nil {
		t.Error("Start of a missing executable: no error")
	}
	if _, err := Start(context.Background(), Spec{Path: "sh"}); err == nil {
		t.Error("Start without a marker: no error")
	}
}
