// Command vmmctl is the operator's command line for vmmd: it drives a running
// daemon (or any QEMU) over QMP, prints human tables or JSON, and exits with
// codes a script can act on (0 ok, 1 QMP error, 2 usage error, 3 cannot
// connect).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one vmmctl invocation and returns its exit code; it is split
// from main so the exit-code mapping lives in one place.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code, msg := classify(err)
	_, _ = io.WriteString(stderr, msg+"\n")
	return code
}
