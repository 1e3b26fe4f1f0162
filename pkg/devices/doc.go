// Package devices is vmmd's device model for the guest's I/O space: a Bus
// that routes port I/O and MMIO exits to the device that claims the address,
// and the small platform devices a PC guest expects to find (reset, ACPI
// power-off, the boot-progress port, and quiet answers for ports guests
// probe).
//
// # Concurrency
//
// Every vCPU goroutine calls the Bus directly on KVM_EXIT_IO and
// KVM_EXIT_MMIO, several at the same time, so the Bus and every device are
// safe for concurrent use. The hot path neither allocates nor logs, and no
// device blocks a vCPU for longer than a short critical section: a vCPU that
// sits in userspace cannot be kicked out by pause or migration.
//
// Devices are registered before any vCPU runs. Lookups read an immutable
// snapshot of the registrations through an atomic pointer, so they take no
// lock; a late registration is still race-free, it just copies the table.
//
// Callbacks handed to devices (reset, power-off, boot progress) run on the
// vCPU goroutine that made the access. They must return quickly: post a
// request to the machine's controller rather than act in place.
package devices
