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
)

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
