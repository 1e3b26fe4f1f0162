// Command qmpc is a minimal QMP client for the nested Linux harness (L1's
// busybox nc has no unix sockets): it connects to a QMP unix socket,
// negotiates capabilities, runs each argument as a command name and prints
// one reply line per command.
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
		fmt.Fprintln(os.Stderr, "usage: qmpc SOCKET COMMAND...")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "qmpc:", err)
		os.Exit(1)
	}
}

// run sends qmp_capabilities and then cmds, printing each command's reply.
func run(sock string, cmds []string) error {
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
	for i, cmd := range append([]string{"qmp_capabilities"}, cmds...) {
		b, err := json.Marshal(map[string]string{"execute": cmd})
		if err != nil {
			return fmt.Errorf("encode %s: %w", cmd, err)
		}
		if _, err := c.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("send %s: %w", cmd, err)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("read reply to %s: %w", cmd, err)
			}
			// Events arrive interleaved with replies; skip them.
			if strings.Contains(line, `"event"`) {
				continue
			}
			if i > 0 {
				fmt.Printf("%s %s", cmd, line)
			}
			break
		}
	}
	return nil
}
