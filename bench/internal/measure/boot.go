package measure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Spec describes a VMM process to start.
type Spec struct {
	// Path is the executable; exec.LookPath resolves it before the clock starts.
	Path string
	// Args are the arguments after argv[0].
	Args []string
	// Marker is the stdout byte string that means the guest is ready.
	Marker []byte
}

// Instance is a running VMM started by Start. Stop must be called on every
// Instance; it is safe to call more than once.
type Instance struct {
	cmd    *exec.Cmd
	start  time.Time
	marker []byte

	stdin          *os.File
	stdout, stderr *os.File
	outHead        capture
	errTail        capture

	ready   chan struct{} // closed when the marker has been read
	readyIn time.Duration // written before ready is closed

	exited  chan struct{} // closed after cmd.Wait returned
	waitErr error         // written before exited is closed

	drained chan struct{} // closed when both output readers hit EOF

	stopOnce sync.Once
	exit     Exit
}

// Start starts spec in its own process group with fresh pipes for stdin,
// stdout and stderr, and starts the boot clock just before the fork.
func Start(ctx context.Context, spec Spec) (*Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	if len(spec.Marker) == 0 {
		return nil, errors.New("start: empty readiness marker")
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	if cmd.Err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Path, cmd.Err)
	}
	// A process group lets Stop reach helpers the VMM may fork; Pdeathsig
	// kills the VMM should the benchmark itself be killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	var parentEnds, childEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("create pipe: %w", err)
		}
		return r, w, nil
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll([]*os.File{inR, inW})
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll([]*os.File{inR, inW, outR, outW})
		return nil, err
	}
	parentEnds = []*os.File{inW, outR, errR}
	childEnds = []*os.File{inR, outW, errW}
	// The VMM gets a stdin that stays open (rather than /dev/null) so that no
	// VMM sees console EOF; os.File values are handed over as-is, so exec
	// starts no copying goroutines and Wait never waits on the pipes.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW

	in := &Instance{
		cmd:     cmd,
		marker:  bytes.Clone(spec.Marker),
		stdin:   inW,
		stdout:  outR,
		stderr:  errR,
		outHead: capture{limit: 8 << 10},
		errTail: capture{limit: 4 << 10, tail: true},
		ready:   make(chan struct{}),
		exited:  make(chan struct{}),
		drained: make(chan struct{}),
	}
	in.start = time.Now()
	err = cmd.Start()
	closeAll(childEnds)
	if err != nil {
		closeAll(parentEnds)
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	go func() {
		err := cmd.Wait()
		in.waitErr = err
		close(in.exited)
	}()
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); in.readStdout() }()
	go func() { defer readers.Done(); in.readStderr() }()
	go func() { readers.Wait(); close(in.drained) }()
	return in, nil
}

// Pid returns the process id of the VMM (also its process group id).
func (in *Instance) Pid() int { return in.cmd.Process.Pid }

// readStdout keeps draining stdout after the marker so a chatty guest never
// blocks on a full pipe.
func (in *Instance) readStdout() {
	buf := make([]byte, 64<<10)
	var window []byte // tail of earlier chunks, so a marker split across reads is found
	found := false
	for {
		n, err := in.stdout.Read(buf)
		if n > 0 {
			now := time.Since(in.start)
			chunk := buf[:n]
			in.outHead.write(chunk)
			if !found {
				window = append(window, chunk...)
				if bytes.Contains(window, in.marker) {
					found = true
					in.readyIn = now
					close(in.ready)
				} else if keep := len(in.marker) - 1; len(window) > keep {
					window = append(window[:0], window[len(window)-keep:]...)
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (in *Instance) readStderr() {
	buf := make([]byte, 16<<10)
	for {
		n, err := in.stderr.Read(buf)
		in.errTail.write(buf[:n])
		if err != nil {
			return
		}
	}
}

// WaitReady waits until the marker appears on stdout and returns the time
// from just before the fork to the read that completed the marker. It fails
// when the process exits first, when timeout passes, or when ctx is done.
func (in *Instance) WaitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-in.ready:
		return in.readyIn, nil
	case <-in.exited:
		// The marker may still sit in the pipe; let the reader get to it.
		select {
		case <-in.ready:
			return in.readyIn, nil
		case <-in.drained:
		case <-timer.C:
		}
		select {
		case <-in.ready:
			return in.readyIn, nil
		default:
		}
		return 0, fmt.Errorf("wait for %q: process exited first (%s); stdout: %q; stderr: %q",
			in.marker, exitStatus(in.cmd, in.waitErr), in.outHead.String(), in.errTail.String())
	case <-timer.C:
		return 0, fmt.Errorf("wait for %q: not seen on stdout within %v; stdout: %q; stderr: %q",
			in.marker, timeout, in.outHead.String(), in.errTail.String())
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for %q: %w", in.marker, ctx.Err())
	}
}

// ReadyLine returns the stdout line holding the marker, or "" if the marker
// was not among the first 8 KiB of output.
func (in *Instance) ReadyLine() string {
	for line := range bytes.Lines([]byte(in.outHead.String())) {
		if bytes.Contains(line, in.marker) {
			return string(bytes.TrimRight(line, "\r\n"))
		}
	}
	return ""
}

// Stderr returns the last 4 KiB the VMM wrote to stderr.
func (in *Instance) Stderr() string { return in.errTail.String() }

// capture keeps the first (or, with tail set, the last) limit bytes written.
type capture struct {
	mu    sync.Mutex
	limit int
	tail  bool
	data  []byte
}

func (c *capture) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tail {
		if room := c.limit - len(c.data); room > 0 {
			c.data = append(c.data, p[:min(room, len(p))]...)
		}
		return
	}
	c.data = append(c.data, p...)
	if over := len(c.data) - c.limit; over > 0 {
		c.data = append(c.data[:0], c.data[over:]...)
	}
}

// String returns the captured bytes.
func (c *capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.data)
}
