// Package kvm is a thin, typed layer over the Linux KVM ioctl API for x86-64
// hosts. It owns the file descriptors of /dev/kvm, of a VM and of its vCPUs,
// mirrors the structures of linux/kvm.h and asm/kvm.h byte for byte, and
// gives bounds-checked access to the shared kvm_run page of each vCPU.
//
// The package holds no policy: it never loops on KVM_RUN, never decides what
// an exit means, and keeps no state beyond the descriptors and mappings it
// owns. Every failing ioctl is reported as an error naming the ioctl and
// wrapping the errno, so callers can test it with errors.Is.
package kvm
