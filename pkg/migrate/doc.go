// Package migrate moves a running guest from one vmmd to another: the
// source and destination engines, the status machine QMP reports, the
// parameters and capabilities, and the statistics of query-migrate.
//
// The handover is two-phase and built around the block reactivation gate.
// The source stops the vCPUs, inactivates every disk (the gate marks "may be
// inactive" first), sends the last dirty pages and the device state, and
// waits for the destination to answer ready. Only then does it send commit
// and enter postmigrate. Before commit, any failure (a disk that cannot be
// inactivated, a timeout, a broken connection, a refusal, migrate_cancel)
// makes the source reactivate its disks and resume through machine.Resume,
// which refuses to start the vCPUs while any disk stays inactive. After
// commit the source never resumes on its own: the destination may be
// running. A destination starts its vCPUs only after commit, again through
// machine.Resume.
//
// This package never starts vCPUs itself; every start goes through the VM's
// Resume method.
package migrate
