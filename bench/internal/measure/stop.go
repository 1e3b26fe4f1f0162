package measure

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// stopGrace is how long a VMM gets between SIGTERM and SIGKILL.
const stopGrace = 2 * time.Second

// drainGrace bounds the wait for the output pipes to close once the VMM has
// exited; only a leftover process in the group can hold them longer.
const drainGrace = time.Second

// Exit describes how a stopped VMM ended.
type Exit struct {
	// Status is the wait status as text, e.g. "exit status 0" or "signal: killed".
	Status string `json:"status"`
	// Clean is true when the VMM exited with status 0 on its own or on SIGTERM.
	Clean bool `json:"clean"`
	// Killed is true when SIGKILL was needed.
	Killed bool `json:"killed,omitempty"`
}

// Stop ends the VMM's process group: SIGTERM, then SIGKILL after 2 s, or at
// once when ctx is done. It reaps the VMM, closes the pipes and returns how
// the VMM exited. Later calls return the first result.
func (in *Instance) Stop(ctx context.Context) Exit {
	in.stopOnce.Do(func() { in.exit = in.stop(ctx) })
	return in.exit
}

func (in *Instance) stop(ctx context.Context) Exit {
	pgid := in.cmd.Process.Pid
	killed := false
	select {
	case <-in.exited:
	default:
		signalGroup(pgid, syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		select {
		case <-in.exited:
		case <-t.C:
			killed = true
		case <-ctx.Done():
			killed = true
		}
		t.Stop()
		if killed {
			signalGroup(pgid, syscall.SIGKILL)
			<-in.exited
		}
	}
	in.stdin.Close()
	t := time.NewTimer(drainGrace)
	select {
	case <-in.drained:
	case <-t.C:
		// Something else in the group still holds the pipes open.
		signalGroup(pgid, syscall.SIGKILL)
		in.stdout.Close()
		in.stderr.Close()
		<-in.drained
	}
	t.Stop()
	in.stdout.Close()
	in.stderr.Close()
	return Exit{
		Status: exitStatus(in.cmd, in.waitErr),
		Clean:  in.waitErr == nil && in.cmd.ProcessState.ExitCode() == 0,
		Killed: killed,
	}
}

// signalGroup signals every process in the group. Errors are ignored: ESRCH
// means the group is already gone, and callers wait for the exit regardless.
func signalGroup(pgid int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
}

func exitStatus(cmd *exec.Cmd, waitErr error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	if waitErr != nil {
		return waitErr.Error()
	}
	return "unknown"
}
