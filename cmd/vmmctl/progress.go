package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// progressLineHelp documents the progress output; scripts parse it, so it
// is part of vmmctl's interface.
const progressLineHelp = `Progress output:
  On a terminal, one bar redrawn in place, then a one-line summary.
  Otherwise (a pipe or a file), one line per poll and a summary line, each
  a word and key=value pairs separated by single spaces; numbers the server
  did not report are "-", error_desc is a double-quoted Go string and last:
    progress status=active total_time_ms=1010 percent=3.0 transferred=131689 remaining=130318336 total=134295552 mbps=1.0 pass=1 expected_downtime_ms=300
    summary status=completed total_time_ms=33 downtime_ms=1 transferred=454899 passes=2 error_desc=""
  With -o json, one migrate-status JSON object per poll, one per line; the
  last line is the final state.`

// reporter shows each poll of a migration and its end.
type reporter interface {
	// update shows one poll.
	update(s migrateStatus) error
	// finish shows the summary of a migration that reached a terminal status.
	finish(s migrateStatus) error
	// abort ends the output early (interrupt, lost connection) so that what
	// follows starts on a fresh line.
	abort()
}

// newReporter picks the bar on a terminal, lines elsewhere, JSON for -o json.
func newReporter(o *options) reporter {
	if o.json() {
		return &jsonReporter{w: o.stdout}
	}
	if width, ok := terminalWidth(o.stdout); ok {
		return &barReporter{w: o.stdout, width: width}
	}
	return &lineReporter{w: o.stdout}
}

// jsonReporter prints one JSON object per poll.
type jsonReporter struct{ w io.Writer }

func (r *jsonReporter) update(s migrateStatus) error { return encodeLine(r.w, s) }
func (r *jsonReporter) finish(migrateStatus) error   { return nil }
func (r *jsonReporter) abort()                       {}

// lineReporter prints the stable key=value lines of progressLineHelp.
type lineReporter struct{ w io.Writer }

func (r *lineReporter) update(s migrateStatus) error {
	_, err := io.WriteString(r.w, progressLine(s)+"\n")
	return err
}

func (r *lineReporter) finish(s migrateStatus) error {
	_, err := io.WriteString(r.w, summaryLine(s)+"\n")
	return err
}

func (r *lineReporter) abort() {}

// intOrDash renders an optional number for the key=value lines.
func intOrDash(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10)
}

// progressLine is one "progress ..." line.
func progressLine(s migrateStatus) string {
	percent, transferred, remaining, total, mbps, pass := "-", "-", "-", "-", "-", "-"
	if r := s.RAM; r != nil {
		percent = strconv.FormatFloat(s.percent(), 'f', 1, 64)
		transferred = strconv.FormatUint(r.Transferred, 10)
		remaining = strconv.FormatUint(r.Remaining, 10)
		total = strconv.FormatUint(r.Total, 10)
		mbps = strconv.FormatFloat(r.Mbps, 'f', 1, 64)
		pass = strconv.FormatUint(r.DirtySyncCount, 10)
	}
	return fmt.Sprintf("progress status=%s total_time_ms=%s percent=%s transferred=%s remaining=%s total=%s mbps=%s pass=%s expected_downtime_ms=%s",
		s.Status, intOrDash(s.TotalTimeMS), percent, transferred, remaining, total, mbps, pass, intOrDash(s.ExpectedDowntimeMS))
}

// summaryLine is the final "summary ..." line.
func summaryLine(s migrateStatus) string {
	transferred, passes := "-", "-"
	if r := s.RAM; r != nil {
		transferred = strconv.FormatUint(r.Transferred, 10)
		passes = strconv.FormatUint(r.DirtySyncCount, 10)
	}
	return fmt.Sprintf("summary status=%s total_time_ms=%s downtime_ms=%s transferred=%s passes=%s error_desc=%s",
		s.Status, intOrDash(s.TotalTimeMS), intOrDash(s.DowntimeMS), transferred, passes, strconv.Quote(s.ErrorDesc))
}

// barReporter redraws one line in place on a terminal.
type barReporter struct {
	w     io.Writer
	width int
	drawn bool
}

// barCells is the width of the bar itself, between the brackets.
const barCells = 24

func (r *barReporter) update(s migrateStatus) error {
	line := barLine(s)
	if limit := r.width - 1; len(line) > limit && limit > 0 {
		// A line that wraps cannot be redrawn with \r.
		line = line[:limit]
	}
	r.drawn = true
	_, err := io.WriteString(r.w, "\r"+line+"\x1b[K")
	return err
}

func (r *barReporter) finish(s migrateStatus) error {
	r.abort()
	_, err := io.WriteString(r.w, summaryText(s)+"\n")
	return err
}

func (r *barReporter) abort() {
	if r.drawn {
		_, _ = io.WriteString(r.w, "\n")
		r.drawn = false
	}
}

// barLine is the bar and the figures beside it (ASCII only, so cutting it
// to the terminal width by bytes is safe).
func barLine(s migrateStatus) string {
	p := s.percent()
	full := int(p * barCells / 100)
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %5.1f%% [%s%s]", s.Status, p, strings.Repeat("#", full), strings.Repeat("-", barCells-full))
	if r := s.RAM; r != nil {
		fmt.Fprintf(&b, " %s of %s sent  %.1f Mbit/s  pass %d", formatBytes(r.Transferred), formatBytes(r.Total), r.Mbps, r.DirtySyncCount)
	}
	if s.ExpectedDowntimeMS != nil {
		fmt.Fprintf(&b, "  exp. downtime %d ms", *s.ExpectedDowntimeMS)
	}
	return b.String()
}

// summaryText is the human summary after the bar.
func summaryText(s migrateStatus) string {
	var b strings.Builder
	b.WriteString("Migration " + s.Status)
	if s.TotalTimeMS != nil {
		if s.Status == "completed" {
			fmt.Fprintf(&b, " in %d ms", *s.TotalTimeMS)
		} else {
			fmt.Fprintf(&b, " after %d ms", *s.TotalTimeMS)
		}
	}
	var parts []string
	if s.DowntimeMS != nil {
		parts = append(parts, fmt.Sprintf("downtime %d ms", *s.DowntimeMS))
	}
	if r := s.RAM; r != nil {
		passes := "passes"
		if r.DirtySyncCount == 1 {
			passes = "pass"
		}
		parts = append(parts, formatBytes(r.Transferred)+" transferred", fmt.Sprintf("%d %s", r.DirtySyncCount, passes))
	}
	if len(parts) > 0 {
		b.WriteString(": " + strings.Join(parts, ", "))
	}
	b.WriteString(".")
	return b.String()
}
