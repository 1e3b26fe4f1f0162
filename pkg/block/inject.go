package block

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxFaultDelay keeps an injected delay from outliving any sane test.
const maxFaultDelay = time.Hour

// FaultRule makes a drive operation fail or stall on purpose. Injection sits
// between the drive and its backend, so an injected failure takes the same
// path as a real one: a flush failure inside Inactivate reaches the gate,
// an activate failure keeps the drive inactive.
type FaultRule struct {
	// Op is the operation: read, write, flush, inactivate (the release of
	// the image after the flush) or activate (taking the image).
	Op Op
	// Errno is the error to fail with; 0 means delay only, then proceed.
	Errno syscall.Errno
	// Count is how many operations the rule hits; 0 means every one.
	Count int
	// Delay stalls each hit operation first. A delay longer than the
	// drive's timeout ends in a timeout error, as a hung server would.
	Delay time.Duration
}

// Validate checks the rule.
func (r FaultRule) Validate() error {
	if _, err := ParseOp(string(r.Op)); err != nil {
		return err
	}
	if r.Errno == 0 && r.Delay == 0 {
		return errors.New("a fault rule needs an errno, a delay or both")
	}
	if r.Errno != 0 && unix.ErrnoName(r.Errno) == "" {
		return fmt.Errorf("errno %d is not a known error number", int(r.Errno))
	}
	if r.Count < 0 {
		return fmt.Errorf("count %d is negative", r.Count)
	}
	if r.Delay < 0 || r.Delay > maxFaultDelay {
		return fmt.Errorf("delay %s is out of range: 0 to %s", r.Delay, maxFaultDelay)
	}
	return nil
}

// String renders the rule in the form ParseFaultRule reads.
func (r FaultRule) String() string {
	s := "op=" + string(r.Op)
	if r.Errno != 0 {
		s += ",errno=" + errnoName(r.Errno)
	}
	s += ",count=" + strconv.Itoa(r.Count)
	s += ",delay-ms=" + strconv.FormatInt(r.Delay.Milliseconds(), 10)
	return s
}

// ParseFaultRule parses "op=flush,errno=EIO,count=1,delay-ms=0" (errno by
// name or number; count and delay-ms optional and 0 by default).
func ParseFaultRule(s string) (FaultRule, error) {
	var r FaultRule
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return FaultRule{}, fmt.Errorf("fault rule %q: %q is not key=value", s, kv)
		}
		if seen[k] {
			return FaultRule{}, fmt.Errorf("fault rule %q: %s given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "op", "operation":
			op, err := ParseOp(v)
			if err != nil {
				return FaultRule{}, fmt.Errorf("fault rule %q: %w", s, err)
			}
			r.Op = op
		case "errno":
			e, err := ParseErrno(v)
			if err != nil {
				return FaultRule{}, fmt.Errorf("fault rule %q: %w", s, err)
			}
			r.Errno = e
		case "count":
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil {
				return FaultRule{}, fmt.Errorf("fault rule %q: count %q is not a non-negative number", s, v)
			}
			r.Count = int(n)
		case "delay-ms":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return FaultRule{}, fmt.Errorf("fault rule %q: delay-ms %q is not a non-negative number", s, v)
			}
			r.Delay = time.Duration(n) * time.Millisecond
		default:
			return FaultRule{}, fmt.Errorf("fault rule %q: unknown key %q (use op, errno, count, delay-ms)", s, k)
		}
	}
	if !seen["op"] && !seen["operation"] {
		return FaultRule{}, fmt.Errorf("fault rule %q: op is required", s)
	}
	if err := r.Validate(); err != nil {
		return FaultRule{}, fmt.Errorf("fault rule %q: %w", s, err)
	}
	return r, nil
}

// ParseErrno parses an errno name ("EIO", "enospc") or number ("5").
func ParseErrno(s string) (syscall.Errno, error) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		e := syscall.Errno(n)
		if n == 0 || unix.ErrnoName(e) == "" {
			return 0, fmt.Errorf("errno %s is not a known error number", s)
		}
		return e, nil
	}
	want := strings.ToUpper(s)
	for e := syscall.Errno(1); e < 4096; e++ {
		if unix.ErrnoName(e) == want {
			return e, nil
		}
	}
	return 0, fmt.Errorf("errno %q is not a known error name such as EIO or ENOSPC", s)
}

// faults is a drive's list of active fault rules.
type faults struct {
	mu    sync.Mutex
	rules []*faultState
}

type faultState struct {
	rule FaultRule
	left int // remaining hits; meaningless when rule.Count is 0
}

func (f *faults) add(r FaultRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &faultState{rule: r, left: r.Count})
}

func (f *faults) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

func (f *faults) list() []FaultRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FaultRule, 0, len(f.rules))
	for _, s := range f.rules {
		r := s.rule
		if r.Count > 0 {
			r.Count = s.left
		}
		out = append(out, r)
	}
	return out
}

// take returns the first rule for op and uses up one of its hits.
func (f *faults) take(op Op) (FaultRule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.rules {
		if s.rule.Op != op {
			continue
		}
		if s.rule.Count > 0 {
			s.left--
			if s.left == 0 {
				f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
			}
		}
		return s.rule, true
	}
	return FaultRule{}, false
}

// apply injects the fault for op, if any: the delay (cut short by ctx or
// the timeout, which then count as a timeout), then the errno.
func (f *faults) apply(ctx context.Context, op Op, timeout time.Duration) error {
	r, ok := f.take(op)
	if !ok {
		return nil
	}
	if r.Delay > 0 {
		delay := time.NewTimer(r.Delay)
		defer delay.Stop()
		limit := time.NewTimer(timeout)
		defer limit.Stop()
		select {
		case <-delay.C:
		case <-limit.C:
			return &timeoutError{what: fmt.Sprintf("%s (injected delay of %s)", op, r.Delay), timeout: timeout.String()}
		case <-ctx.Done():
			return fmt.Errorf("%s (injected delay of %s): %w: %w", op, r.Delay, ErrIO, ctx.Err())
		}
	}
	if r.Errno != 0 {
		return &InjectedError{Op: op, Errno: r.Errno}
	}
	return nil
}

// injectBackend consults the fault rules before each backend operation.
type injectBackend struct {
	Backend
	faults  *faults
	timeout time.Duration
}

// ReadAt applies the read rules, then calls the backend.
func (b *injectBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := b.faults.apply(ctx, OpRead, b.timeout); err != nil {
		return err
	}
	return b.Backend.ReadAt(ctx, p, off)
}

// WriteAt applies the write rules, then calls the backend.
func (b *injectBackend) WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error {
	if err := b.faults.apply(ctx, OpWrite, b.timeout); err != nil {
		return err
	}
	return b.Backend.WriteAt(ctx, p, off, flags)
}

// Flush applies the flush rules, then calls the backend.
func (b *injectBackend) Flush(ctx context.Context) error {
	if err := b.faults.apply(ctx, OpFlush, b.timeout); err != nil {
		return err
	}
	return b.Backend.Flush(ctx)
}

// Acquire applies the activate rules, then calls the backend.
func (b *injectBackend) Acquire(ctx context.Context) error {
	if err := b.faults.apply(ctx, OpActivate, b.timeout); err != nil {
		return err
	}
	return b.Backend.Acquire(ctx)
}

// Release applies the inactivate rules, then calls the backend.
func (b *injectBackend) Release(ctx context.Context) error {
	if err := b.faults.apply(ctx, OpInactivate, b.timeout); err != nil {
		return err
	}
	return b.Backend.Release(ctx)
}
