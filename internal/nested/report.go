// Package nested reads the results of the nested Linux harness (test/linux):
// the lines L1's /init prints on L1's serial console, as run-l1.sh logs them
// (each line may carry a host timestamp such as "[  12.34] ").
//
// The harness's line protocol:
//
//	L1-SCENARIO <name> pass|fail|skip [detail]   one per scenario run
//	L1-METRIC <key>=<value> ...                  measurements (boot times)
//	L1-RESULT pass|fail [names]                  L1's verdict, once
//	L1-DONE uptime=<seconds>                     L1 finished and powers off
//
// A scenario run more than once (l2repeat) is reported each time; Parse keeps
// every report in order.
package nested

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Status is a scenario's or L1's verdict.
type Status string

// Verdicts the harness prints.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Scenario is one L1-SCENARIO line.
type Scenario struct {
	Name   string
	Status Status
	// Detail is the rest of the line: timings on a pass, the failed checks
	// on a fail, the reason on a skip.
	Detail string
}

// Report is everything one L1 boot reported.
type Report struct {
	Scenarios []Scenario
	// Metrics holds the key=value pairs of every L1-METRIC line; a key
	// reported twice keeps its last value.
	Metrics map[string]string
	// Result is L1's verdict, empty if L1 printed none (it died or hung).
	Result Status
	// Done says L1 reached the end of its /init.
	Done bool
}

// maxLine bounds one console line; longer lines (a corrupted console) are
// an error rather than unbounded memory.
const maxLine = 1 << 20

var (
	stampRE = regexp.MustCompile(`^\[ *[0-9]+\.[0-9]+\] `)
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

// Parse reads a harness log. It fails on a malformed harness line (an
// unknown verdict, a scenario without a name, a metric without "="), never
// on other console output.
func Parse(r io.Reader) (*Report, error) {
	rep := &Report{Metrics: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(stampRE.ReplaceAllString(sc.Text(), ""), "\r")
		if err := rep.add(line); err != nil {
			return nil, fmt.Errorf("harness log line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read harness log: %w", err)
	}
	return rep, nil
}

func (rep *Report) add(line string) error {
	word, rest, _ := strings.Cut(line, " ")
	switch word {
	case "L1-SCENARIO":
		name, rest, _ := strings.Cut(rest, " ")
		verdict, detail, _ := strings.Cut(rest, " ")
		if !nameRE.MatchString(name) {
			return fmt.Errorf("L1-SCENARIO with a bad name %q", name)
		}
		st, err := status(verdict)
		if err != nil {
			return fmt.Errorf("L1-SCENARIO %s: %w", name, err)
		}
		rep.Scenarios = append(rep.Scenarios, Scenario{Name: name, Status: st, Detail: strings.TrimSpace(detail)})
	case "L1-METRIC":
		for _, kv := range strings.Fields(rest) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !nameRE.MatchString(k) {
				return fmt.Errorf("L1-METRIC item %q is not key=value", kv)
			}
			rep.Metrics[k] = v
		}
	case "L1-RESULT":
		verdict, _, _ := strings.Cut(rest, " ")
		st, err := status(verdict)
		if err != nil || st == Skip {
			return fmt.Errorf("L1-RESULT %q: want pass or fail", verdict)
		}
		if rep.Result != "" {
			return fmt.Errorf("a second L1-RESULT line")
		}
		rep.Result = st
	case "L1-DONE":
		rep.Done = true
	}
	return nil
}

func status(s string) (Status, error) {
	switch st := Status(s); st {
	case Pass, Fail, Skip:
		return st, nil
	}
	return "", fmt.Errorf("verdict %q is not pass, fail or skip", s)
}

// Check returns nil if L1 finished, said pass, no scenario failed, and every
// scenario in want passed at least once; otherwise an error listing every
// problem. Scenarios not in want may pass or be skipped.
func (rep *Report) Check(want []string) error {
	var probs []string
	if !rep.Done {
		probs = append(probs, "L1 did not finish (no L1-DONE)")
	}
	if rep.Result != Pass {
		probs = append(probs, fmt.Sprintf("L1-RESULT is %q, want pass", rep.Result))
	}
	passed := map[string]bool{}
	for _, s := range rep.Scenarios {
		switch s.Status {
		case Pass:
			passed[s.Name] = true
		case Fail:
			probs = append(probs, fmt.Sprintf("scenario %s failed: %s", s.Name, s.Detail))
		}
	}
	for _, w := range want {
		if !passed[w] {
			probs = append(probs, fmt.Sprintf("scenario %s never passed", w))
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("nested harness: %s", strings.Join(probs, "; "))
	}
	return nil
}
