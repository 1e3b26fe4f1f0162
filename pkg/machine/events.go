package machine

import "time"

// Event is something a QMP client should hear about (STOP, RESUME, RESET,
// SHUTDOWN, ...). The run state has already changed when an event is sent.
type Event struct {
	Name string
	Data map[string]any
	Time time.Time
}

// Cause says why vCPUs are being started. Every path that starts or resumes
// a guest in QEMU maps to one of these; they all go through Resume.
type Cause string

// The resume causes.
const (
	CauseStart              Cause = "start"               // first start without --paused
	CauseCont               Cause = "cont"                // QMP cont / operator
	CauseReset              Cause = "reset"               // reset while running
	CauseMigrationFailed    Cause = "migration-failed"    // source auto-resume after a failed migration
	CauseMigrationCancelled Cause = "migration-cancelled" // source auto-resume after migrate_cancel
	CauseIncomingDone       Cause = "incoming-done"       // destination autostart
	CauseIOErrorResume      Cause = "io-error-resume"     // resume after an I/O-error pause
)

// Causes lists every resume cause, in one place.
func Causes() []Cause {
	return []Cause{CauseStart, CauseCont, CauseReset, CauseMigrationFailed,
		CauseMigrationCancelled, CauseIncomingDone, CauseIOErrorResume}
}
