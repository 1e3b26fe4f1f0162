// Command qmpc is a minimal QMP client for the nested Linux harness (L1's
// busybox nc has no unix sockets): it connects to a QMP unix socket,
// negotiates capabilities, runs each argument as a command and prints one
// reply line per command, prefixed with the command's name.
//
// An argument is a command name, optionally followed by a space and a JSON
// object of arguments: 'migrate {"uri":"unix:/tmp/m.sock"}'.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, `usage: qmpc SOCKET 'COMMAND [{JSON arguments}]'...`)
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "qmpc:", err)
		os.Exit(1)
	}
}

// request is one QMP command.
type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// parse splits "NAME [JSON]" into a request, checking that the arguments
// are a JSON object.
func parse(arg string) (request, error) {
	name, args, _ := strings.Cut(strings.TrimSpace(arg), " ")
	r := request{Execute: name}
	if name == "" {
		return r, fmt.Errorf("empty command in %q", arg)
	}
	if args = strings.TrimSpace(args); args != "" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(args), &obj); err != nil {
			return r, fmt.Errorf("arguments of %s are not a JSON object: %w", name, err)
		}
		r.Arguments = json.RawMessage(args)
	}
	return r, nil
}

// run sends qmp_capabilities and then cmds, printing each command's reply.
func run(sock string, cmds []string) error {
	reqs := []request{{Execute: "qmp_capabilities"}}
	for _, c := range cmds {
		r, err := parse(c)
		if err != nil {
			return err
		}
		reqs = append(reqs, r)
	}
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial %s: %w", sock, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	for i, req := range reqs {
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("encode %s: %w", req.Execute, err)
		}
		if _, err := c.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("send %s: %w", req.Execute, err)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("read reply to %s: %w", req.Execute, err)
			}
			// Events arrive interleaved with replies; skip them.
			if strings.Contains(line, `"event"`) {
				continue
			}
			if i > 0 {
				fmt.Printf("%s %s", req.Execute, line)
			}
			break
		}
	}
	return nil
}
