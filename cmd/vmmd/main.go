// Command vmmd is the vmmd virtual machine monitor daemon: it boots one guest
// on KVM and runs it until the guest powers off or vmmd is told to stop.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	err := newRootCommand().Execute()
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "vmmd: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}
