# vmmd build and test entry points. The targets below are a contract that
# scripts and CI rely on (see docs/ARCHITECTURE.md): keep their names.
GO      ?= go
GOFLAGS ?=
BIN     := bin
GUEST   := build/guest/vmmd-testguest.elf
# Packages whose tests need no /dev/kvm: these also run under -race.
UNIT_PKGS := ./pkg/memory/... ./pkg/boot/... ./pkg/devices/... ./pkg/block/... ./cmd/...

.PHONY: all build guest linux deps run test test-unit test-kvm vet bench clean

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
	$(GO) test -race -count=1 $(UNIT_PKGS)

# KVM tests boot the test guest; VMMD_REQUIRE_KVM=1 (set by CI) turns a
# missing /dev/kvm into a failure instead of a skip.
test-kvm: build guest
	$(GO) test -count=1 -timeout 20m ./...

# test: everything, as CI runs it.
test: vet test-unit test-kvm

bench: build guest
	$(GO) run ./bench/cmd/vmmbench

clean:
	rm -rf $(BIN) build
