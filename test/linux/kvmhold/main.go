// Command kvmhold keeps one KVM VM (in-kernel irqchip, one vCPU that never
// runs) open in the nested harness's L1 until it is killed.
//
// Why: creating and destroying VMs and vCPUs flips kernel static keys in L1
// (the scheduler's preempt-notifier key on the first VM, KVM's
// apic_sw_disabled key on the first vCPU and again a second after its
// guest enables the APIC) and turns SVM on and off on every CPU (on the
// first VM and after the last). Each flip live-patches L1's kernel text
// with int3 breakpoints and cross-CPU IPIs, and QEMU's multi-threaded TCG,
// which runs L1, has been seen to wedge both L1 CPUs in that patching
// (exc_int3 and the patched branch in __schedule, at vmmd's VM creation).
// While this VM lives, the keys stay on and SVM stays enabled, so the
// vmmd runs under test flip nothing.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmmd/vmmd/pkg/kvm"
)

func main() {
	if err := hold(); err != nil {
		fmt.Fprintln(os.Stderr, "kvmhold:", err)
		os.Exit(1)
	}
}

func hold() error {
	sys, err := kvm.Open("/dev/kvm")
	if err != nil {
		return err
	}
	defer sys.Close()
	size, err := sys.VCPUMmapSize()
	if err != nil {
		return err
	}
	vm, err := sys.CreateVM()
	if err != nil {
		return err
	}
	defer vm.Close()
	if err := vm.CreateIRQChip(); err != nil {
		return err
	}
	cpu, err := vm.CreateVCPU(0, size)
	if err != nil {
		return err
	}
	defer cpu.Close()
	fmt.Println("kvmhold: holding a VM with one vCPU")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return nil
}
