package migrate

// Status is a migration's state, named as QEMU's MigrationStatus so that
// QMP clients see the same strings.
type Status string

// The statuses vmmd uses (QEMU's pre-copy subset).
const (
	StatusNone       Status = "none"
	StatusSetup      Status = "setup"
	StatusActive     Status = "active"
	StatusDevice     Status = "device"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
	StatusCancelling Status = "cancelling"
	StatusCancelled  Status = "cancelled"
)

// Finished reports whether s is a final status: nothing more will happen
// until a new migration starts.
func (s Status) Finished() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// inProgress reports whether a migration with status s is still running.
func (s Status) inProgress() bool {
	switch s {
	case StatusSetup, StatusActive, StatusDevice, StatusCancelling:
		return true
	}
	return false
}

// Statuses lists every status in the order a migration goes through them.
func Statuses() []Status {
	return []Status{StatusNone, StatusSetup, StatusActive, StatusDevice, StatusCompleted,
		StatusFailed, StatusCancelling, StatusCancelled}
}

// statusTransitions is the status machine: what may follow what. Failing
// and cancelling are possible from every in-progress status.
func statusTransitions() map[Status][]Status {
	return map[Status][]Status{
		StatusNone:       {StatusSetup},
		StatusSetup:      {StatusActive, StatusFailed, StatusCancelling},
		StatusActive:     {StatusDevice, StatusCompleted, StatusFailed, StatusCancelling},
		StatusDevice:     {StatusCompleted, StatusFailed, StatusCancelling},
		StatusCancelling: {StatusCancelled, StatusFailed},
		StatusCompleted:  {StatusSetup},
		StatusFailed:     {StatusSetup},
		StatusCancelled:  {StatusSetup},
	}
}

// canMove reports whether the status machine allows from -> to.
func canMove(from, to Status) bool {
	for _, s := range statusTransitions()[from] {
		if s == to {
			return true
		}
	}
	return false
}
