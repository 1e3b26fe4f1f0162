# vmmd build and test entry points. The targets below are a contract that
# scripts and CI rely on (see docs/ARCHITECTURE.md): keep their names.
GO      ?= go
GOFLAGS ?=
BIN     := bin
GUEST   := build/guest/vmmd-testguest.elf
# Packages tested under the race detector. pkg/kvm and pkg/machine include
# KVM tests; they run here too (the race detector watches the vCPU threads).
RACE_PKGS := ./pkg/... ./internal/... ./bench/...

.PHONY: all build guest linux deps run test test-unit test-kvm test-linux test-examples vet verify reliability fuzz bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $(BIN)/ ./cmd/...

guest: linux
	$(MAKE) -C test/guest OUT=$(CURDIR)/build/guest

linux:
	./scripts/fetch-linux.sh build/linux

# deps installs what a fresh Debian machine lacks (needs root for apt-get).
deps:
	./scripts/deps.sh

# run: set everything up on a fresh machine and boot the test guest.
run: deps build guest
	$(BIN)/vmmd --kernel $(GUEST) --memory 256M --cpus 2 --serial stdio

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test-unit:
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

# KVM tests boot the test guest; VMMD_REQUIRE_KVM=1 (set by CI) turns a
# missing /dev/kvm into a failure instead of a skip.
test-kvm: build guest
	$(GO) test -count=1 -timeout 20m ./cmd/...

# verify: spin checks the Promela model of the migration handover and the
# gate exhaustively, and checks that each deliberately broken variant of it
# is caught (pkg/migrate/model/README.md).
verify:
	./scripts/verify.sh

# reliability: the fault matrix (every fault at every migration phase) on
# real KVM and nbdkit; writes the table and its figures to docs/RELIABILITY.md.
reliability: build guest
	VMMD_RELIABILITY_REPORT=$(CURDIR)/docs/RELIABILITY.md $(GO) test -count=1 -timeout 20m -run TestFaultMatrix ./cmd/vmmd
	{ printf '\n## Model checking (make verify)\n\n```\n'; ./scripts/verify.sh; printf '```\n\n'; cat docs/fuzz-runs.md; } >> docs/RELIABILITY.md

# fuzz: every Go fuzz target for FUZZTIME each (findings become regression
# tests in the package's testdata/fuzz).
FUZZTIME ?= 30s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# test-examples: the orchestration scripts in examples/, end to end with
# fresh binaries (part of test-kvm too; needs nbdkit and jq).
test-examples: build guest
	$(GO) test -count=1 -timeout 10m -run TestExamples -v ./cmd/vmmctl

# test-linux: Debian's stock kernel on vmmd on real KVM, nested: QEMU (TCG,
# emulated AMD CPU with SVM) runs an L1 Linux whose kvm-amd runs vmmd:
# boots (1 and 2 vCPUs, bzImage and PVH), disk, reboot, QMP, and a live
# migration A->B->C with the disk on a shared file (test/linux/l1-init.sh).
# The Go test parses the scenario lines L1 prints into one subtest each and
# fails (never skips) when a scenario fails or L1 reports no result.
test-linux: build
	./test/linux/build-l1.sh
	VMMD_TEST_LINUX=1 $(GO) test -count=1 -v -timeout 50m ./test/linux/

# test: everything CI runs.
test: vet verify guest test-unit test-kvm test-linux

bench: build guest
	$(GO) run ./bench/cmd/vmmbench

clean:
	rm -rf $(BIN) build
