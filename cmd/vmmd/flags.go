package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// usageError marks bad input from the operator (flags, files, host limits
// that make the request impossible): vmmd exits 2 for these.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// options are the parsed command-line flags.
type options struct {
	kernel, initrd, cmdline string
	memory                  string
	cpus                    int
	serial                  string
	paused                  bool
	incoming                string
	name                    string
	logLevel, logFormat     string
	kvmPath                 string
	drives                  []string
	qmp                     []string
	noACPI                  bool
}

// newRootCommand builds the vmmd command. sigs delivers SIGTERM/SIGINT; main
// subscribes before anything else so that a stop request arriving while the
// VM is being built still ends in a clean exit.
func newRootCommand(sigs <-chan os.Signal) *cobra.Command {
	var o options
	start := time.Now()
	cmd := &cobra.Command{
		Use:   "vmmd --kernel IMAGE [flags]",
		Short: "vmmd runs one virtual machine on KVM",
		Long: `vmmd is a virtual machine monitor daemon. It boots one guest on KVM from a
PVH ELF kernel or a Linux bzImage and runs it until the guest powers off or
vmmd receives SIGTERM/SIGINT (exit 0). A guest reboot resets the VM.

Exit codes: 0 clean stop, 1 runtime failure, 2 bad input (flags, files,
/dev/kvm missing or inaccessible, limits of this host).`,
		Example: `  vmmd --kernel build/guest/vmmd-testguest.elf --memory 256M --cpus 2 --serial stdio
  vmmd --kernel vmlinuz --initrd initrd.img --append "console=ttyS0" --memory 1G
  vmmd --kernel build/guest/vmmd-testguest.elf --memory 256M --qmp unix:/run/dst.qmp --incoming unix:/run/dst.mig`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q: vmmd takes only flags (see vmmd --help)", args[0])
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o, start, sigs)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see vmmd --help)", err)}
	})
	f := cmd.Flags()
	f.StringVar(&o.kernel, "kernel", "", "guest kernel: a PVH ELF (vmlinux, the test guest) or a bzImage (required)")
	f.StringVar(&o.initrd, "initrd", "", "initial ramdisk loaded for the kernel")
	f.StringVar(&o.cmdline, "append", "", "kernel command line")
	f.StringVar(&o.memory, "memory", "512M", "guest RAM, e.g. 256M or 2G")
	f.IntVar(&o.cpus, "cpus", 1, "number of vCPUs")
	f.StringArrayVar(&o.drives, "drive", nil, "disk (repeatable): file=PATH|nbd://HOST[:PORT]/EXPORT|nbd+unix:///EXPORT?socket=PATH,id=NAME[,format=raw][,cache=writeback|none][,readonly=on][,werror=report|stop|ignore][,rerror=...][,timeout=5s]")
	f.StringVar(&o.serial, "serial", "stdio", "COM1 backend: stdio, file:PATH, unix:PATH or none")
	f.BoolVar(&o.noACPI, "no-acpi", false, "do not give the guest ACPI tables (like QEMU's -no-acpi)")
	f.BoolVar(&o.paused, "paused", false, "create the VM but do not start its vCPUs (like QEMU -S)")
	f.StringVar(&o.incoming, "incoming", "", "wait for the guest to arrive by live migration: unix:PATH, tcp:HOST:PORT, file:PATH, or defer (then QMP migrate-incoming names the address); disks are opened inactive until the guest arrives")
	f.StringVar(&o.name, "name", "", "VM name, reported by query-name and used in logs")
	f.StringArrayVar(&o.qmp, "qmp", nil, "QMP monitor socket (repeatable): unix:PATH")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&o.logFormat, "log-format", "", "log format: console or json (default: console on a terminal, json otherwise)")
	f.StringVar(&o.kvmPath, "kvm-device", "/dev/kvm", "KVM device node")
	return cmd
}

func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

// contextOrBackground guards against cobra handing us a nil context when
// Execute is used instead of ExecuteContext.
func contextOrBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

func readFileArg(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--%s %s: %w", flag, path, errors.Unwrap(err))
	}
	return b, nil
}
