package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// consoleVMM is a VMM whose serial console is its stdin and stdout.
type consoleVMM struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // closed at stdout EOF
	stderr *strings.Builder
	exited chan struct{}
}

func startConsoleVMM(c vmmConfig) (*consoleVMM, error) {
	cmd := exec.Command(c.Path, c.Args...)
	// Own process group to reach helpers; Pdeathsig kills the VMM should the
	// benchmark be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	g := &consoleVMM{cmd: cmd, lines: make(chan string, 64), stderr: &strings.Builder{}, exited: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	g.stdin = stdin
	stderrDone := make(chan struct{})
	go func() {
		// Only the tail matters for error messages.
		sc := bufio.NewScanner(errPipe)
		var tail []string
		for sc.Scan() {
			tail = append(tail, sc.Text())
			if len(tail) > 5 {
				tail = tail[1:]
			}
		}
		g.stderr.WriteString(strings.Join(tail, "\n"))
		close(stderrDone)
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			g.lines <- sc.Text()
		}
		close(g.lines)
		<-stderrDone
		_ = cmd.Wait()
		close(g.exited)
	}()
	return g, nil
}

func (g *consoleVMM) send(cmd string) error {
	if _, err := io.WriteString(g.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("console %q: %w", cmd, err)
	}
	return nil
}

// waitLine is waitLineWithin with the disk bench's generous timeout.
func (g *consoleVMM) waitLine(ctx context.Context, want, bad *regexp.Regexp) (string, error) {
	return g.waitLineWithin(ctx, want, bad, diskCommandTimeout)
}

// waitLineWithin returns the next line matching want; a line matching bad
// (if not nil), EOF, the timeout or ctx end it with an error.
func (g *consoleVMM) waitLineWithin(ctx context.Context, want, bad *regexp.Regexp, timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-g.lines:
			if !ok {
				<-g.exited
				return "", fmt.Errorf("VMM exited before %q (%s); stderr: %s", want, g.cmd.ProcessState, g.stderr.String())
			}
			if want.MatchString(l) {
				return l, nil
			}
			if bad != nil && bad.MatchString(l) {
				return "", fmt.Errorf("guest: %s", l)
			}
		case <-timer.C:
			return "", fmt.Errorf("no %q within %v", want, timeout)
		case <-ctx.Done():
			return "", fmt.Errorf("wait for %q: %w", want, ctx.Err())
		}
	}
}

// stop powers the guest off and waits for the VMM to exit, killing its
// process group if it has not after 10 s. Lines still coming are drained
// so the VMM never blocks on a full pipe.
func (g *consoleVMM) stop() {
	_ = g.send("poweroff")
	g.await(10 * time.Second)
}

// terminate sends SIGTERM to the VMM's process group and waits for it to
// exit, with SIGKILL after grace. It is for VMMs whose guest cannot power
// off (stopped, or still waiting for an incoming migration). It returns the
// exit status and whether the VMM exited with status 0 without SIGKILL.
func (g *consoleVMM) terminate(grace time.Duration) (string, bool) {
	_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGTERM)
	killed := g.await(grace)
	st := g.cmd.ProcessState
	if st == nil {
		return "unknown", false
	}
	return st.String(), !killed && st.ExitCode() == 0
}

// await waits for the VMM to exit, draining its output, and kills its
// process group after grace; it reports whether the kill was needed.
func (g *consoleVMM) await(grace time.Duration) bool {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	lines := g.lines
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				lines = nil // closed: wait for the exit without spinning
			}
		case <-g.exited:
			return false
		case <-timer.C:
			_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
			for range g.lines {
			}
			<-g.exited
			return true
		}
	}
}
