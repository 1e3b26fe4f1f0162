package monitor

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/qmp"
)

func itoa(i int) string { return strconv.Itoa(i) }

// hmp answers the few human-monitor commands scripts use. Like QEMU, an
// unknown command is not a QMP error: the text says so.
func (mon *Monitor) hmp(ctx context.Context, args qmp.Args) (any, error) {
	line, _ := args.Str("command-line")
	var out strings.Builder
	switch strings.Join(strings.Fields(line), " ") {
	case "info status":
		s := mon.m.State()
		fmt.Fprintf(&out, "VM status: %s", map[bool]string{true: "running", false: "paused"}[s.Running()])
		if !s.Running() && s != machine.StatePaused {
			fmt.Fprintf(&out, " (%s)", s)
		}
		out.WriteString("\n")
	case "info block":
		for _, d := range mon.m.Drives() {
			ro := ""
			if d.ReadOnly() {
				ro = ", read-only"
			}
			act := ""
			if !d.Active() {
				act = ", inactive"
			}
			fmt.Fprintf(&out, "%s: %s (raw%s%s)\n", d.Name(), d.Spec().File, ro, act)
			fmt.Fprintf(&out, "    Cache mode:       %s\n", map[bool]string{true: "writeback, direct", false: "writeback"}[d.Info().Cache == "none"])
		}
	case "info migrate":
		out.WriteString(mon.migrateText())
	default:
		word := strings.Fields(line + " x")[0]
		fmt.Fprintf(&out, "unknown command: '%s'\n", word)
	}
	// HMP output crosses QMP with CRLF line ends, as QEMU's does.
	return strings.ReplaceAll(out.String(), "\n", "\r\n"), nil
}
