package qmp

import (
	"errors"
	"runtime/debug"
	"strings"
	"time"
)

// QEMU's texts for the negotiation rules (monitor/qmp.c,
// monitor/qmp-cmds-control.c).
const (
	descExpectCaps  = "Expecting capabilities negotiation with 'qmp_capabilities'"
	descCapsAlready = "Capabilities negotiation is already complete, command ignored"
)

// handle answers one message from the streamer: a parsed request or the
// parse error that replaced it.
func (c *conn) handle(req *value, parseErr string) {
	if c.ctx.Err() != nil {
		return // shutting down: run nothing more
	}
	start := time.Now()
	var (
		resp      *value
		negotiate bool
		name      string
	)
	if parseErr != "" {
		resp = errorReply(genericf("%s", parseErr))
	} else {
		resp, negotiate, name = c.dispatch(req)
	}
	// Most replies are short: one allocation instead of several growths.
	line := append(appendQEMU(make([]byte, 0, 128), resp), '\r', '\n')
	c.sendReply(line, negotiate)
	if after := c.after; after != nil {
		c.after = nil
		after()
	}
	if e := c.log.Debug(); e.Enabled() {
		if name != "" {
			e = e.Str("command", name)
		}
		if errv := resp.get("error"); errv != nil {
			e = e.Str("class", errv.get("class").s).Str("desc", errv.get("desc").s)
		}
		e.Dur("took", time.Since(start)).Msg("QMP command")
	}
}

// dispatch is QEMU's qmp_dispatch plus the negotiation-mode rewrite of
// monitor_qmp_dispatch.
func (c *conn) dispatch(req *value) (resp *value, negotiate bool, name string) {
	var id *value
	err := func() *Error {
		if req.kind != kObject {
			return genericf("QMP input must be a JSON object")
		}
		id = req.get("id")
		exec, err := checkRequest(req)
		if err != nil {
			return err
		}
		name = exec
		negotiated := c.isNegotiated()
		cmd := c.srv.lookup(name)
		if cmd == nil || (!negotiated && name != cmdCapabilities) {
			return Errorf(CommandNotFound, "The command %s has not been found", name)
		}
		args := req.get("arguments")
		if args == nil {
			args = &value{kind: kObject}
		}
		if err := validateArgs(cmd.schema, args); err != nil {
			return err
		}
		if name == cmdCapabilities {
			if err := capabilities(negotiated, args); err != nil {
				return err
			}
			negotiate = true
			resp = objValue(member{"return", &value{kind: kObject}})
			return nil
		}
		ret, err := c.call(cmd, Args{obj: args})
		if err != nil {
			return err
		}
		resp = objValue(member{"return", ret})
		return nil
	}()
	if err != nil {
		if err.Class == CommandNotFound && !negotiate && !c.isNegotiated() {
			err = Errorf(CommandNotFound, "%s", descExpectCaps)
		}
		resp = errorReply(err)
	}
	if id != nil {
		resp.obj = append(resp.obj, member{"id", id})
	}
	return resp, negotiate, name
}

// checkRequest is qmp_dispatch_check_obj: members are checked in the order
// QEMU iterates the request dict, so with several faults the same one is
// reported. It returns the command name.
func checkRequest(req *value) (string, *Error) {
	exec, found := "", false
	var buf [smallObject]int
	for _, i := range qdictOrder(req.obj, buf[:0]) {
		m := req.obj[i]
		switch m.key {
		case "execute":
			if m.val.kind != kString {
				return "", genericf("QMP input member 'execute' must be a string")
			}
			exec, found = m.val.s, true
		case "arguments":
			if m.val.kind != kObject {
				return "", genericf("QMP input member 'arguments' must be an object")
			}
		case "id":
		default:
			// "exec-oob" lands here too: OOB is never negotiated.
			return "", genericf("QMP input member '%s' is unexpected", m.key)
		}
	}
	if !found {
		return "", genericf("QMP input lacks member 'execute'")
	}
	return exec, nil
}

// capabilities is qmp_qmp_capabilities. No capability is offered, so any
// requested one is refused with QEMU's text.
func capabilities(negotiated bool, args *value) *Error {
	if negotiated {
		return Errorf(CommandNotFound, "%s", descCapsAlready)
	}
	if enable := args.get("enable"); enable != nil && len(enable.arr) > 0 {
		names := make([]string, len(enable.arr))
		for i, e := range enable.arr {
			names[i] = e.s
		}
		return genericf("Capability %s not available", strings.Join(names, ", "))
	}
	return nil
}

// call runs a handler, turning its result into a value and its error or
// panic into an *Error.
func (c *conn) call(cmd *command, args Args) (ret *value, qerr *Error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Str("command", cmd.name).Interface("panic", r).
				Str("stack", string(debug.Stack())).Msg("QMP command handler panicked")
			ret, qerr = nil, genericf("internal error in command '%s'", cmd.name)
		}
	}()
	out, err := cmd.handler(c.ctx, args)
	if d, ok := out.(*Deferred); ok && err == nil {
		out, c.after = d.Return, d.After
	}
	if err != nil {
		var qe *Error
		if errors.As(err, &qe) {
			return nil, &Error{Class: qe.Class, Desc: qe.Desc}
		}
		return nil, genericf("%s", err.Error())
	}
	if out == nil {
		return &value{kind: kObject}, nil
	}
	v, err := fromGo(out)
	if err != nil {
		c.log.Error().Err(err).Str("command", cmd.name).Msg("QMP reply cannot be encoded")
		return nil, genericf("internal error in command '%s': %v", cmd.name, err)
	}
	if v.kind == kNull {
		// A typed nil pointer; QEMU answers {} when there is no value.
		v = &value{kind: kObject}
	}
	return v, nil
}

// errorReply builds {"error": {"class": ..., "desc": ...}}.
func errorReply(err *Error) *value {
	class := err.Class
	if class == "" {
		class = GenericError
	}
	return objValue(member{"error", objValue(
		member{"class", strValue(string(class))},
		member{"desc", strValue(err.Desc)},
	)})
}
