package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// sizeParameters are the migration parameters counted in bytes, which
// migrate-set accepts with binary suffixes (1G).
func sizeParameters() []string {
	return []string{"max-bandwidth", "max-postcopy-bandwidth", "xbzrle-cache-size", "avail-switchover-bandwidth"}
}

// migrationSettings is what the server knows: capability states and
// parameter values, keyed by QEMU's names.
type migrationSettings struct {
	caps   map[string]bool
	params map[string]json.RawMessage
}

// migrateSettingsJSON is the JSON shape of `migrate-set -o json`.
type migrateSettingsJSON struct {
	Capabilities map[string]bool            `json:"capabilities"`
	Parameters   map[string]json.RawMessage `json:"parameters"`
}

// fetchSettings runs query-migrate-capabilities and query-migrate-parameters.
func fetchSettings(ctx context.Context, c *client) (migrationSettings, error) {
	var caps []struct {
		Capability string `json:"capability"`
		State      bool   `json:"state"`
	}
	if err := c.run(ctx, "query-migrate-capabilities", nil, &caps); err != nil {
		return migrationSettings{}, err
	}
	s := migrationSettings{caps: map[string]bool{}, params: map[string]json.RawMessage{}}
	for _, cp := range caps {
		s.caps[cp.Capability] = cp.State
	}
	if err := c.run(ctx, "query-migrate-parameters", nil, &s.params); err != nil {
		return migrationSettings{}, err
	}
	return s, nil
}

// sortedKeys returns m's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// settingChanges are parsed NAME=VALUE arguments, split by kind.
type settingChanges struct {
	caps   map[string]bool
	params map[string]any
	names  []string // in argument order, for the output
}

// parseSettings checks each NAME=VALUE against what the server offers and
// converts the value to the type the server reports for it. Every mistake
// is a usage error naming the argument.
func parseSettings(known migrationSettings, assignments []string) (settingChanges, error) {
	ch := settingChanges{caps: map[string]bool{}, params: map[string]any{}}
	seen := map[string]bool{}
	for _, a := range assignments {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return ch, usagef(fmt.Errorf("invalid setting %q: want NAME=VALUE, e.g. downtime-limit=100 or events=on", a))
		}
		if seen[name] {
			return ch, usagef(fmt.Errorf("setting %q given twice", name))
		}
		seen[name] = true
		ch.names = append(ch.names, name)
		if _, isCap := known.caps[name]; isCap {
			on, err := parseOnOff(value)
			if err != nil {
				return ch, usagef(fmt.Errorf("capability %s: %w", name, err))
			}
			ch.caps[name] = on
			continue
		}
		cur, isParam := known.params[name]
		if !isParam {
			return ch, usagef(fmt.Errorf("unknown migration setting %q: this server has no such capability or parameter\n  capabilities: %s\n  parameters: %s",
				name, strings.Join(sortedKeys(known.caps), ", "), strings.Join(sortedKeys(known.params), ", ")))
		}
		v, err := paramValue(name, value, cur)
		if err != nil {
			return ch, usagef(fmt.Errorf("parameter %s: %w", name, err))
		}
		ch.params[name] = v
	}
	return ch, nil
}

// paramValue converts value to the JSON type of the parameter's current
// value cur, because QMP takes numbers, booleans and strings literally.
func paramValue(name, value string, cur json.RawMessage) (any, error) {
	var probe any
	if err := json.Unmarshal(cur, &probe); err != nil {
		return nil, fmt.Errorf("server reported an unreadable value %s: %w", cur, err)
	}
	switch probe.(type) {
	case float64:
		for _, s := range sizeParameters() {
			if s == name {
				return parseSize(value)
			}
		}
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value %q: want a non-negative integer", value)
		}
		return n, nil
	case bool:
		return parseOnOff(value)
	case string:
		return value, nil
	}
	return nil, fmt.Errorf("a structured value (%s) cannot be set here: use vmmctl qmp with migrate-set-parameters", cur)
}

// apply sends the changes: capabilities first, since a parameter may only
// matter once its capability is on.
func (ch settingChanges) apply(ctx context.Context, c *client) error {
	if len(ch.caps) > 0 {
		list := make([]map[string]any, 0, len(ch.caps))
		for _, name := range sortedKeys(ch.caps) {
			list = append(list, map[string]any{"capability": name, "state": ch.caps[name]})
		}
		if err := c.run(ctx, "migrate-set-capabilities", map[string]any{"capabilities": list}, nil); err != nil {
			return err
		}
	}
	if len(ch.params) > 0 {
		if err := c.run(ctx, "migrate-set-parameters", ch.params, nil); err != nil {
			return err
		}
	}
	return nil
}

// writeSettings prints the named settings (all when names is empty) as a
// table or as JSON.
func writeSettings(o *options, s migrationSettings, names []string) error {
	out := migrateSettingsJSON{Capabilities: map[string]bool{}, Parameters: map[string]json.RawMessage{}}
	var rows [][]string
	add := func(name string) {
		if on, ok := s.caps[name]; ok {
			out.Capabilities[name] = on
			state := "off"
			if on {
				state = "on"
			}
			rows = append(rows, []string{name, "capability", state})
			return
		}
		if v, ok := s.params[name]; ok {
			out.Parameters[name] = v
			text := string(v)
			var str string
			if json.Unmarshal(v, &str) == nil {
				text = orDash(str)
			}
			rows = append(rows, []string{name, "parameter", text})
		}
	}
	if len(names) == 0 {
		for _, n := range sortedKeys(s.caps) {
			add(n)
		}
		for _, n := range sortedKeys(s.params) {
			add(n)
		}
	} else {
		for _, n := range names {
			add(n)
		}
	}
	if o.json() {
		return writeJSON(o.stdout, out)
	}
	return writeTable(o.stdout, []string{"NAME", "KIND", "VALUE"}, rows)
}

func newMigrateSetCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate-set [NAME=VALUE...]",
		Short: "Set migration capabilities and parameters by name",
		Long: `Set migration capabilities (on/off) and parameters by QEMU's names, e.g.
  vmmctl migrate-set downtime-limit=100 max-bandwidth=1G events=on
Names are checked against what the server offers (query-migrate-capabilities
and query-migrate-parameters); an unknown name is a usage error (exit 2)
that lists the known ones. Values: on/off for capabilities; integers for
numeric parameters (max-bandwidth and other byte counts take binary
suffixes: 512K, 100M, 1G); text for string parameters. Capabilities are set
before parameters. The values read back afterwards are printed.

Without arguments, print every capability and parameter.

JSON fields (-o json):
  capabilities  object  capability name -> bool
  parameters    object  parameter name -> value as the server reports it`,
		Args: args(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			c, err := o.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			known, err := fetchSettings(ctx, c)
			if err != nil {
				return err
			}
			if len(a) == 0 {
				return writeSettings(o, known, nil)
			}
			ch, err := parseSettings(known, a)
			if err != nil {
				return err
			}
			if err := ch.apply(ctx, c); err != nil {
				return err
			}
			now, err := fetchSettings(ctx, c)
			if err != nil {
				return err
			}
			return writeSettings(o, now, ch.names)
		},
	}
}
