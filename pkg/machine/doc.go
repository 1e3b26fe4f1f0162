// Package machine assembles a VM from KVM, guest memory, devices and a boot
// image, runs one goroutine per vCPU, and owns the run-state machine.
//
// The one rule this package exists to keep: vCPUs start only in Resume, and
// Resume asks the block reactivation gate first. No other function starts
// them; a test parses this package to make sure of it.
package machine
