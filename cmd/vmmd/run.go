package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/boot"
	"github.com/vmmd/vmmd/pkg/kvm"
	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/memory"
	"github.com/vmmd/vmmd/pkg/migrate"
	"github.com/vmmd/vmmd/pkg/monitor"
	"github.com/vmmd/vmmd/pkg/qmp"
)

// shutdownGrace bounds how long stopping the guest and flushing its console
// may take once vmmd has been told to exit.
const shutdownGrace = 5 * time.Second

func run(ctx context.Context, o options, start time.Time, sigs <-chan os.Signal) error {
	ctx = contextOrBackground(ctx)
	log, err := newLogger(o)
	if err != nil {
		return err
	}
	cfg, err := validate(o, log)
	if err != nil {
		return err
	}
	sys, err := kvm.Open(o.kvmPath)
	if err != nil {
		return &usageError{err}
	}
	defer sys.Close()

	incoming, err := parseIncoming(o.incoming)
	if err != nil {
		return err
	}
	cfg.Incoming = o.incoming != ""
	drives, err := openDrives(ctx, o.drives, cfg.Incoming, log)
	if err != nil {
		return err
	}
	defer closeDrives(drives, log)
	cfg.Drives = drives

	console, err := openConsole(ctx, o.serial, log)
	if err != nil {
		return err
	}
	defer console.Close()
	cfg.SerialOut = console
	cfg.Start = start
	cfg.Log = log
	// The server adds "component":"qmp" to its own log lines.
	srv := qmp.NewServer(qmp.ServerConfig{Version: qemuVersion(), Package: "vmmd " + version, Logger: log})
	defer srv.Close()
	cfg.OnEvent = func(e machine.Event) {
		log.Debug().Str("event", e.Name).Interface("data", e.Data).Msg("event")
		if e.Data == nil {
			srv.Broadcast(e.Name, nil, e.Time) // QEMU omits "data" for events without it
		} else {
			srv.Broadcast(e.Name, e.Data, e.Time)
		}
	}

	m, err := machine.New(ctx, sys, cfg)
	if err != nil {
		var ce *machine.ConfigError
		if errors.As(err, &ce) {
			return &usageError{err}
		}
		return err
	}
	console.Attach(m)

	quit := make(chan struct{})
	var quitOnce sync.Once
	mig := migrate.New(migrate.Config{VM: m, Emit: m.Emit, Log: log, Incoming: cfg.Incoming, Autostart: !o.paused})
	// A migration in progress is cancelled, and its clean-up finished,
	// before the VM is closed (here on early returns, explicitly below).
	defer mig.Close()
	if _, err := monitor.New(srv, m, monitor.Config{Name: o.name, Log: log, Migrator: mig,
		Quit: func() { quitOnce.Do(func() { close(quit) }) }}); err != nil {
		_ = m.Close(ctx)
		return err
	}
	// The migration listener is up before the monitor, so that whoever
	// sees the QMP socket can also reach the migration address.
	if incoming != "" {
		if err := mig.Incoming(ctx, incoming); err != nil {
			_ = m.Close(ctx)
			return usagef("--incoming %s: %w", incoming, err)
		}
		log.Info().Str("uri", incoming).Msg("waiting for the incoming migration")
	} else if cfg.Incoming {
		log.Info().Msg("waiting for migrate-incoming over QMP (--incoming defer)")
	}
	for _, addr := range o.qmp {
		if err := srv.Listen(ctx, addr); err != nil {
			_ = m.Close(ctx)
			return usagef("--qmp %s: %w", addr, err)
		}
		log.Info().Str("socket", addr).Msg("QMP monitor listening")
	}

	select {
	case s := <-sigs:
		log.Info().Str("signal", s.String()).Msg("stop requested while the VM was being built")
		return m.Close(ctx)
	default:
	}
	switch {
	case cfg.Incoming:
		// Nothing starts here: the guest arrives by migration, and the
		// migration engine resumes it through the gate.
	case o.paused:
		log.Info().Msg("VM created paused (--paused); it will not run until resumed")
	default:
		if err := m.Resume(ctx, machine.CauseStart); err != nil {
			_ = m.Close(ctx)
			return fmt.Errorf("start the guest: %w", err)
		}
	}

	select {
	case s := <-sigs:
		log.Info().Str("signal", s.String()).Msg("stopping the guest")
		m.Emit("SHUTDOWN", map[string]any{"guest": false, "reason": "host-signal"})
	case <-quit:
		log.Info().Msg("quit requested over QMP")
	case <-m.Done():
		log.Info().Str("reason", string(m.Exit())).Msg("guest finished")
	case <-ctx.Done():
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	mig.Close()
	if err := m.Close(cctx); err != nil {
		return fmt.Errorf("stop the guest: %w", err)
	}
	return nil
}

// parseIncoming checks --incoming: "" (no incoming migration), "defer", or
// a migration URI. It returns the URI to listen on now ("" for defer).
func parseIncoming(s string) (string, error) {
	if s == "" || s == "defer" {
		return "", nil
	}
	if _, err := migrate.ParseURI(s); err != nil {
		return "", usagef("--incoming %s: %w (use unix:PATH, tcp:HOST:PORT, file:PATH or defer)", s, err)
	}
	return s, nil
}

// validate turns flags into a machine configuration, reporting every
// operator mistake as a usage error before anything is created.
func validate(o options, log zerolog.Logger) (machine.Config, error) {
	var cfg machine.Config
	if o.kernel == "" {
		return cfg, usagef("--kernel is required: give a PVH ELF or a bzImage (see vmmd --help)")
	}
	kernel, err := readFileArg("kernel", o.kernel)
	if err != nil {
		return cfg, err
	}
	kind, err := boot.Detect(kernel)
	if err != nil {
		return cfg, usagef("--kernel %s: %w", o.kernel, err)
	}
	log.Info().Str("kernel", o.kernel).Str("format", kind.String()).Msg("kernel image recognised")
	var initrd []byte
	if o.initrd != "" {
		if initrd, err = readFileArg("initrd", o.initrd); err != nil {
			return cfg, err
		}
	}
	size, err := memory.ParseSize(o.memory)
	if err != nil {
		return cfg, usagef("--memory: %w", err)
	}
	if size < memory.MinSize {
		return cfg, usagef("--memory %s is too small: vmmd needs at least %s", o.memory, memory.FormatSize(memory.MinSize))
	}
	if size%memory.PageSize != 0 {
		return cfg, usagef("--memory %s is not a whole number of 4 KiB pages", o.memory)
	}
	if host, err := hostMemory(); err == nil && size > host {
		return cfg, usagef("--memory %s is too large: this host has %s of RAM", o.memory, memory.FormatSize(host))
	}
	if size > memory.MaxSize {
		return cfg, usagef("--memory %s is too large: vmmd supports at most %s", o.memory, memory.FormatSize(memory.MaxSize))
	}
	if o.cpus < 1 {
		return cfg, usagef("--cpus %d: need at least 1 vCPU", o.cpus)
	}
	return machine.Config{Name: o.name, Kernel: kernel, Initrd: initrd, Cmdline: o.cmdline, Memory: size, CPUs: o.cpus, NoACPI: o.noACPI}, nil
}

// openDrives parses and opens every --drive. A drive that cannot be opened
// (missing file, unreachable NBD server, image locked by another process) is
// bad input: vmmd refuses to start rather than boot a guest without its disk.
func openDrives(ctx context.Context, specs []string, inactive bool, log zerolog.Logger) ([]*block.Drive, error) {
	var drives []*block.Drive
	seen := map[string]bool{}
	for _, s := range specs {
		spec, err := block.ParseDriveSpec(s)
		if err != nil {
			closeDrives(drives, log)
			return nil, &usageError{err}
		}
		if seen[spec.ID] {
			closeDrives(drives, log)
			return nil, usagef("--drive: duplicate id=%s", spec.ID)
		}
		seen[spec.ID] = true
		// An incoming guest's disks still belong to the migration source:
		// open them without the image lock, which arrives with the guest.
		d, err := block.OpenDrive(ctx, spec, block.OpenOptions{Inactive: inactive, Log: log.With().Str("drive", spec.ID).Logger()})
		if err != nil {
			closeDrives(drives, log)
			return nil, usagef("--drive id=%s: %w", spec.ID, err)
		}
		drives = append(drives, d)
	}
	if len(drives) > machine.MaxDrives {
		closeDrives(drives, log)
		return nil, usagef("%d --drive flags: vmmd supports at most %d disks", len(drives), machine.MaxDrives)
	}
	return drives, nil
}

// closeDrives flushes and closes the drives, releasing image locks.
func closeDrives(drives []*block.Drive, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, d := range drives {
		if err := d.Close(ctx); err != nil {
			log.Error().Err(err).Str("drive", d.Name()).Msg("close drive")
		}
	}
}

// hostMemory returns MemTotal from /proc/meminfo.
func hostMemory() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/meminfo: %w", err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

func newLogger(o options) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(o.logLevel)
	if err != nil || o.logLevel == "" {
		return zerolog.Nop(), usagef("--log-level %q: use debug, info, warn or error", o.logLevel)
	}
	format := o.logFormat
	if format == "" {
		format = "json"
		if isTerminal(os.Stderr) {
			format = "console"
		}
	}
	var log zerolog.Logger
	switch format {
	case "json":
		log = zerolog.New(os.Stderr)
	case "console":
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	default:
		return zerolog.Nop(), usagef("--log-format %q: use console or json", o.logFormat)
	}
	name := o.name
	if name == "" {
		name = "vmmd"
	}
	return log.Level(level).With().Timestamp().Str("vm", name).Logger(), nil
}
