package migrate

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/vmmd/vmmd/pkg/migrate/stream"
)

// maxReturnPayload bounds what the destination may send back: its answers
// are empty except for an abort reason.
const maxReturnPayload = 64 << 10

// returnPath reads the destination's answers (accept, ready, abort) on its
// own goroutine, so the source notices a refusal while it is still sending.
type returnPath struct {
	msgs chan rpMsg
	quit chan struct{}
	done chan struct{}
}

type rpMsg struct {
	kind   stream.Kind
	reason string
	err    error
}

// startReturnPath starts the reader; it ends when r fails (the owner closes
// the connection) and wait collects it.
func startReturnPath(r io.Reader) *returnPath {
	rp := &returnPath{msgs: make(chan rpMsg, 4), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(rp.done)
		rd := stream.NewReader(r, maxReturnPayload)
		if err := rd.ReadHeader(); err != nil {
			rp.send(rpMsg{err: err})
			return
		}
		for {
			sec, err := rd.Next()
			if err != nil {
				rp.send(rpMsg{err: err})
				return
			}
			m := rpMsg{kind: sec.Kind}
			if sec.Kind == stream.KindAbort {
				m.reason, _ = stream.ParseAbort(sec.Payload)
			}
			if !rp.send(m) {
				return
			}
		}
	}()
	return rp
}

func (rp *returnPath) send(m rpMsg) bool {
	select {
	case rp.msgs <- m:
		return true
	case <-rp.quit:
		return false
	}
}

// wait stops the reader; the caller has closed the connection.
func (rp *returnPath) wait() {
	close(rp.quit)
	<-rp.done
}

// asError turns an answer other than the one expected into an error.
func (m rpMsg) asError(what string) error {
	switch {
	case m.err == io.EOF:
		return fmt.Errorf("the destination closed the connection before it could %s", what)
	case m.err != nil:
		return fmt.Errorf("the destination's answer: %w", m.err)
	case m.kind == stream.KindAbort:
		return fmt.Errorf("the destination refused: %s", m.reason)
	}
	return fmt.Errorf("the destination sent %s while expected to %s", m.kind, what)
}

// expect waits for kind, bounded by timeout.
func (rp *returnPath) expect(ctx context.Context, kind stream.Kind, timeout time.Duration, what string) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-rp.msgs:
		if m.err == nil && m.kind == kind {
			return nil
		}
		return m.asError(what)
	case <-t.C:
		return fmt.Errorf("the destination did not %s within %v (x-handover-timeout)", what, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poll returns an error if the destination has said anything (it only
// speaks mid-stream to refuse) or the connection broke.
func (rp *returnPath) poll() error {
	select {
	case m := <-rp.msgs:
		return m.asError("receive the guest")
	default:
		return nil
	}
}
