// Command vmmd is the vmmd virtual machine monitor daemon: it boots one guest
// on KVM and runs it until the guest powers off or vmmd is told to stop.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/qmp"
)

// version is vmmd's own version, sent in the QMP greeting's package string.
const version = "0.1.0-dev"

// qemuVersion is the QEMU version vmmd's QMP claims to be: the commands it
// implements follow QEMU 10.0's schemas (blockdev-set-active, query-status
// without singlestep).
func qemuVersion() qmp.VersionTriple { return qmp.VersionTriple{Major: 10, Minor: 0, Micro: 0} }

func main() {
	// Boot timing is read from the logs: millisecond timestamps. This is the
	// only place zerolog's process-wide settings are touched.
	zerolog.TimeFieldFormat = zerolog.TimeFormatUnixMs
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	err := newRootCommand(sigs).Execute()
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "vmmd: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}
