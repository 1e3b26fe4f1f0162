package main

import (
	"errors"
	"fmt"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{&connectError{socket: "/x.sock", err: errors.New("connect: refused")}, exitConnect, "vmmctl: cannot reach vmmd at /x.sock: connect: refused"},
		{fmt.Errorf("wrapped: %w", &qmpError{cmd: "stop", err: errors.New("boom")}), exitQMP, "error: boom"},
		{usagef(errors.New("bad")), exitUsage, "vmmctl: bad\nRun 'vmmctl --help' for usage."},
		{errors.New(`unknown command "x" for "vmmctl"`), exitUsage, "vmmctl: unknown command \"x\" for \"vmmctl\"\nRun 'vmmctl --help' for usage."},
		{errors.New("write: broken pipe"), exitQMP, "error: write: broken pipe"},
	} {
		code, msg := classify(tc.err)
		if code != tc.code || msg != tc.msg {
			t.Errorf("classify(%v) = %d, %q; want %d, %q", tc.err, code, msg, tc.code, tc.msg)
		}
	}
}
