# XenIo: `make run` starts the daemons and example guests; `make test` installs what the tests need and runs them.
SHELL := /bin/bash
.DEFAULT_GOAL := build

CONFIG ?= Release
DOTNET ?= dotnet
PREFIX ?= /usr/local
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

# Debian packages the tests use (each issue adds what its tests drive). Installed only when missing.
DEPS_APT := \
	gcc libc6-dev make libxen-dev xenstore-utils iproute2 procps util-linux \
	iperf3 tshark socat libpcap0.8 qemu-system-x86 iputils-ping e2fsprogs telnet tmux systemd fio
# The peers `make bench` measures against.
BENCH_DEPS_APT := gcc libxen-dev fio openvswitch-switch vde2 iperf3

.PHONY: deps bench-deps restore build test run bench install clean

deps: restore
	@bash scripts/apt-ensure.sh $(DEPS_APT)

bench-deps: deps
	@bash scripts/apt-ensure.sh $(BENCH_DEPS_APT)

restore:
	$(DOTNET) restore XenIo.sln --verbosity quiet

build: restore
	$(DOTNET) build XenIo.sln -c $(CONFIG) --no-restore -v quiet -nologo -clp:NoSummary
	$(DOTNET) publish xenio/XenIo.Cli.csproj -c $(CONFIG) --no-restore -v quiet -nologo -o bin/lib
	@# The guest agent runs once per domain: NativeAOT keeps it small (ARCHITECTURE.md); hyperd finds it next to xenio.
	$(DOTNET) publish guest/XenIo.Guest.csproj -c $(CONFIG) -r linux-x64 -p:PublishAot=true -v quiet -nologo -o bin/lib
	@ln -sfn lib/xenio bin/xenio
	@echo "built: bin/xenio"

# FILTER narrows the run: make test FILTER=FullyQualifiedName~Rings
test: deps build
	@bash scripts/run-tests.sh $(CONFIG) "$(FILTER)"

run: build
	@bash scripts/run.sh

# ONLY narrows the run to benchmarks whose name contains it: make bench ONLY=ring
bench: bench-deps build
	$(DOTNET) run --project bench/XenIo.Bench -c Release --no-restore -- --only "$(ONLY)" --out bench/results

install: build
	install -d $(DESTDIR)$(PREFIX)/lib/xenio $(DESTDIR)$(PREFIX)/bin
	cp -a bin/lib/. $(DESTDIR)$(PREFIX)/lib/xenio/
	ln -sfn $(PREFIX)/lib/xenio/xenio $(DESTDIR)$(PREFIX)/bin/xenio

clean:
	$(DOTNET) clean XenIo.sln -v quiet -nologo >/dev/null || true
	rm -rf bin TestResults bench/results/work
