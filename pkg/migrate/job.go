package migrate

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// job is one migration, outgoing or incoming. The engine goroutine owns it;
// query-migrate and migrate_cancel reach it through its mutex.
type job struct {
	outgoing bool
	uri      URI
	params   Parameters // as they were when the migration started
	xbzrle   bool       // the xbzrle capability when it started
	lim      *limiter   // outgoing only
	log      zerolog.Logger
	emit     func(string, map[string]any)

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// emitMu keeps MIGRATION events in the order of the status changes
	// they announce: a cancel (from the monitor) and the engine's own
	// change can race, and each emits after releasing mu.
	emitMu sync.Mutex

	mu         sync.Mutex
	st         Status
	err        string
	cancelled  bool // migrate_cancel (or Close) asked for it
	committing bool // the source is sending commit: too late to cancel
	conn       io.Closer
	start      time.Time
	setupTime  time.Duration
	stoppedAt  time.Time // when the guest stopped for switchover
	total      time.Duration
	downtime   time.Duration
	steps      *DowntimeSteps // where downtime went, once committed
	totalBytes uint64         // guest RAM
	bytes      func() uint64
	c          counters
}

func (j *job) status() Status {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.st
}

// setStatus moves the status machine and announces the change. A move the
// machine does not allow is logged and ignored: it means a bug here, and
// reporting a wrong status would be worse than keeping the old one.
func (j *job) setStatus(s Status) {
	j.emitMu.Lock()
	defer j.emitMu.Unlock()
	j.mu.Lock()
	from := j.st
	ok := from == s || canMove(from, s)
	if ok {
		j.st = s
	}
	j.mu.Unlock()
	if !ok {
		j.log.Error().Str("from", string(from)).Str("to", string(s)).Msg("migration status change refused")
		return
	}
	if from != s {
		j.log.Info().Str("status", string(s)).Msg("migration status")
		j.emit("MIGRATION", map[string]any{"status": string(s)})
	}
}

// requestCancel marks the job cancelled and breaks its connection, so a
// blocked read or write returns at once.
func (j *job) requestCancel() {
	j.mu.Lock()
	if !j.st.inProgress() || j.st == StatusCancelling || j.committing {
		j.mu.Unlock()
		return
	}
	j.cancelled = true
	conn := j.conn
	j.mu.Unlock()
	j.setStatus(StatusCancelling)
	j.cancel()
	if conn != nil {
		conn.Close()
	}
}

// beginCommit marks the point after which migrate_cancel is a no-op; it
// fails if a cancel got there first.
func (j *job) beginCommit() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cancelled {
		return false
	}
	j.committing = true
	return true
}

func (j *job) wasCancelled() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cancelled
}

func (j *job) setConn(c io.Closer) {
	j.mu.Lock()
	j.conn = c
	cancelled := j.cancelled
	j.mu.Unlock()
	if cancelled {
		c.Close()
	}
}

// info builds query-migrate's reply as QEMU does for each status.
func (j *job) info() Info {
	j.mu.Lock()
	defer j.mu.Unlock()
	in := Info{Status: j.st}
	switch j.st {
	case StatusFailed, StatusCancelled, StatusCancelling:
		in.ErrorDesc = j.err
		return in
	case StatusSetup:
		return in
	}
	var sent uint64
	if j.bytes != nil {
		sent = j.bytes()
	}
	ram := &RAMInfo{Transferred: sent, Remaining: j.c.remaining, Total: j.totalBytes,
		Duplicate: j.c.duplicate, Normal: j.c.normal, NormalBytes: j.c.normal * pageSize,
		DirtyPagesRate: j.c.dirtyRate, Mbps: j.c.mbps, DirtySyncCount: j.c.syncs, PageSize: pageSize,
		PagesPerSecond: j.c.pagesPerSec, PrecopyBytes: j.c.precopyBytes, DowntimeBytes: j.c.downtimeBytes}
	in.RAM = ram
	if j.xbzrle {
		x := &XBZRLEInfo{Bytes: j.c.xbzrleBytes, Pages: j.c.xbzrlePages, CacheMiss: j.c.cacheMiss, Overflow: j.c.overflow}
		if j.outgoing {
			x.CacheSize = j.params.XBZRLECacheSize
		}
		if n := x.Pages + x.CacheMiss; n > 0 {
			x.CacheMissRate = float64(x.CacheMiss) / float64(n)
		}
		in.XBZRLECache = x
	}
	in.SetupTime = msOf(j.setupTime)
	if j.st == StatusCompleted {
		in.TotalTime = msOf(j.total)
		if j.outgoing {
			in.Downtime = msOf(j.downtime)
			if j.steps != nil {
				st := *j.steps
				in.DowntimeSteps = &st
			}
		}
		in.ErrorDesc = j.err // a destination whose guest could not start says why
		return in
	}
	in.TotalTime = msOf(time.Since(j.start))
	if j.outgoing {
		in.ExpectedDowntime = msOf(j.c.expectedDowntime)
	}
	return in
}

// finish records the end of the job.
func (j *job) finish(s Status, errDesc string) {
	j.mu.Lock()
	j.total = time.Since(j.start)
	j.err = errDesc
	j.mu.Unlock()
	j.setStatus(s)
	j.cancel()
	close(j.done)
}
