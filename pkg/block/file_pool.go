package block

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// fileJob is one backend operation handed to an I/O goroutine. Jobs are
// reused, except one whose caller gave up: its goroutine may still write
// done long after.
type fileJob struct {
	fn    func() error
	done  chan error // capacity 1: the goroutine never blocks on it
	timer *time.Timer
	// state settles the race between the goroutine finishing and the
	// caller giving up: whoever moves it off jobRunning first decides
	// whether the call counts as stuck.
	state atomic.Int32
}

const (
	jobRunning int32 = iota
	jobFinished
	jobAbandoned
)

// ioPool keeps the goroutines that run a backend's system calls alive
// between operations: starting a goroutine per operation, and the thread
// wake-ups that come with it, cost as much as a 64 KiB page-cache copy. A
// goroutine stuck in the kernel simply stops taking jobs; the pool grows
// when no idle goroutine is waiting, so a stuck one never delays others.
type ioPool struct {
	jobs chan *fileJob // unbuffered: a send succeeds only to an idle goroutine
	quit chan struct{} // closed by close: idle goroutines exit
	free chan *fileJob // finished jobs for reuse
	live atomic.Int32  // goroutines started and not yet gone
}

// maxIOGoroutines bounds a backend's I/O goroutines. A goroutine between
// two jobs can miss one and another gets started, so without a bound the
// pool would creep upwards; beyond it, callers wait for a free goroutine
// (within their timeout).
const maxIOGoroutines = 64

func newIOPool() *ioPool {
	return &ioPool{
		jobs: make(chan *fileJob),
		quit: make(chan struct{}),
		free: make(chan *fileJob, 64),
	}
}

// close lets idle goroutines exit; busy ones exit after their job.
func (p *ioPool) close() { close(p.quit) }

// get returns a job ready to run fn.
func (p *ioPool) get(fn func() error, timeout time.Duration) *fileJob {
	var j *fileJob
	select {
	case j = <-p.free:
		j.timer.Reset(timeout)
	default:
		j = &fileJob{done: make(chan error, 1), timer: time.NewTimer(timeout)}
	}
	j.fn = fn
	j.state.Store(jobRunning)
	return j
}

// put keeps a finished job for reuse.
func (p *ioPool) put(j *fileJob) {
	j.fn = nil
	j.timer.Stop()
	select {
	case p.free <- j:
	default:
	}
}

// start hands j to an idle goroutine, or to a new one while there are
// fewer than maxIOGoroutines; it reports false when all are busy.
func (p *ioPool) start(j *fileJob, onAbandoned func()) bool {
	select {
	case p.jobs <- j:
		return true
	default:
	}
	if p.live.Add(1) > maxIOGoroutines {
		p.live.Add(-1)
		return false
	}
	go p.loop(j, onAbandoned)
	return true
}

// loop runs jobs until the pool closes.
func (p *ioPool) loop(j *fileJob, onAbandoned func()) {
	for {
		err := j.fn()
		if !j.state.CompareAndSwap(jobRunning, jobFinished) {
			// The caller timed out or was cancelled and counted this
			// call as stuck; it no longer is.
			onAbandoned()
		}
		j.done <- err
		select {
		case j = <-p.jobs:
		case <-p.quit:
			p.live.Add(-1)
			return
		}
	}
}

// run runs fn on an I/O goroutine and waits at most the timeout (and no
// longer than ctx allows) for it.
func (b *FileBackend) run(ctx context.Context, what string, fn func() error) error {
	if err := b.Err(); err != nil {
		return err
	}
	j := b.pool.get(fn, b.timeout)
	if !b.pool.start(j, b.unstuck) {
		select {
		case b.pool.jobs <- j:
		case <-j.timer.C:
			b.pool.put(j)
			return &timeoutError{what: b.path + ": " + what + ": waiting for a free I/O goroutine", timeout: b.timeout.String()}
		case <-ctx.Done():
			b.pool.put(j)
			return fmt.Errorf("%s: %s: %w: %w", b.path, what, ErrIO, ctx.Err())
		}
	}
	select {
	case err := <-j.done:
		b.pool.put(j)
		return err
	case <-j.timer.C:
		if b.abandon(j) {
			return &timeoutError{what: b.path + ": " + what, timeout: b.timeout.String()}
		}
	case <-ctx.Done():
		if b.abandon(j) {
			return fmt.Errorf("%s: %s: %w: %w", b.path, what, ErrIO, ctx.Err())
		}
	}
	// The call finished just as the caller gave up: its result is on the
	// way.
	err := <-j.done
	b.pool.put(j)
	return err
}

// abandon counts a call that is still running after its caller gave up,
// until it returns; it reports false if the call has finished after all.
func (b *FileBackend) abandon(j *fileJob) bool {
	if !j.state.CompareAndSwap(jobRunning, jobAbandoned) {
		return false
	}
	// The goroutine may finish and uncount the call before this counts
	// it; the count then dips below zero for a moment, which Err reads
	// as not stuck, as it is.
	b.stuck.Add(1)
	return true
}

func (b *FileBackend) unstuck() { b.stuck.Add(-1) }
