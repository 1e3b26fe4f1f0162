package qmp

import "fmt"

// ErrorClass is the "class" member of a QMP error reply. QEMU's
// QapiErrorClass has exactly the five values below.
type ErrorClass string

// The QMP error classes.
const (
	GenericError    ErrorClass = "GenericError"
	CommandNotFound ErrorClass = "CommandNotFound"
	DeviceNotActive ErrorClass = "DeviceNotActive"
	DeviceNotFound  ErrorClass = "DeviceNotFound"
	KVMMissingCap   ErrorClass = "KVMMissingCap"
)

// Error is a QMP error reply. Handlers return it to choose the class; any
// other error is sent as GenericError with its Error() text.
type Error struct {
	Class ErrorClass
	Desc  string
}

// Error returns the description, which is what QMP clients show.
func (e *Error) Error() string { return e.Desc }

// Errorf builds an *Error of the given class with a formatted description.
func Errorf(class ErrorClass, format string, args ...any) *Error {
	return &Error{Class: class, Desc: fmt.Sprintf(format, args...)}
}

// genericf builds a GenericError.
func genericf(format string, args ...any) *Error {
	return Errorf(GenericError, format, args...)
}

// Deferred lets a handler act after its reply has been queued: Return is
// the reply, After runs next on the connection's reader. quit uses it so
// that its {} reaches the client before the SHUTDOWN event, as with QEMU.
type Deferred struct {
	Return any
	After  func()
}
