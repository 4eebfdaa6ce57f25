# Developer entry points. `make test` is the project's test command (CI runs it).
#
# Postgres and NATS come from scripts/services.sh: a private cluster and a pinned
# nats-server per checkout, state in .data/. Set DATABASE_URL / NATS_URL to use
# servers of your own instead.

SERVICES := scripts/services.sh

# Runs a command with DATABASE_URL and NATS_URL of the running services exported.
# (The script also writes .data/services.env, but an `include` of it would be read
# before the `services` prerequisite has started anything, so it is not used here.)
WITH_SERVICES = eval "$$($(SERVICES) env)" &&

# Passed through to the homeserver only when set: an empty value is not "unset".
ifdef HOMESERVER_DATA_DIR
export HOMESERVER_DATA_DIR
endif
ifdef PUBKY_DHT_BOOTSTRAP
export PUBKY_DHT_BOOTSTRAP
endif

# Extra arguments for the benchmark runner, e.g. make bench BENCH_ARGS='--full'.
BENCH_ARGS ?=

.PHONY: help services services-stop run test lint bench bench-compare up down e2e-compose e2e-drive e2e-dav drill-backup bench-exit e2e-reference-mirror fuzz soak

help:
	@echo 'make services       start the private Postgres and NATS ($(SERVICES) up)'
	@echo 'make services-stop  stop them'
	@echo 'make run            services, then the whole homeserver in one process'
	@echo 'make test           services, then cargo test --workspace'
	@echo 'make lint           rustfmt check and clippy with warnings as errors'
	@echo 'make fuzz           the parsers over arbitrary input, FUZZ_CASES (300000) cases per property'
	@echo 'make drill-backup   backup and restore drill: write under load, back up, wipe, restore, check (DRILL_WRITES=100000)'
	@echo 'make bench-exit     export/import of one user between two homeserver processes (EXIT_BENCH_ENTRIES=100000)'
	@echo 'make e2e-drive      the /drive page in a real browser (chromium, Playwright), screenshots in docs/drive'
	@echo 'make e2e-dav        WebDAV with real clients: litmus (basic copymove props locks), rclone, cadaver'
	@echo 'make bench          benchmarks of our homeserver, quick (BENCH_ARGS=--full)'
	@echo 'make bench-compare  the same for ours and the reference (pubky-homeserver 0.17.1)'
	@echo 'make e2e-reference-mirror  our mirror of a user of the reference homeserver (builds it once)'
	@echo 'make soak           homeserver all under mixed load for SOAK_MINUTES (30): memory, files, threads flat?'
	@echo 'make up / down      split deployment with docker-compose (scripts/compose.sh)'
	@echo 'make e2e-compose    that deployment from nothing: smoke scenario, fault drills, teardown'

services:
	$(SERVICES) up

services-stop:
	$(SERVICES) down

# Development only: the admin API on localhost with the password `admin`, unless you
# set your own. (The server itself has no default password.)
run: services
	$(WITH_SERVICES) HOMESERVER_ADMIN_LISTEN="$${HOMESERVER_ADMIN_LISTEN-127.0.0.1:6288}" \
		HOMESERVER_ADMIN_PASSWORD="$${HOMESERVER_ADMIN_PASSWORD-admin}" \
		cargo run --release -p homeserver -- all

test: services
	$(WITH_SERVICES) cargo test --workspace

# The /drive page in a real browser: Debian's chromium (installed with apt when
# missing) driven by Playwright (`playwright-core`, pinned by
# services/drive/e2e/package-lock.json; it never downloads a browser of its own).
# Screenshots of every step at desktop and phone width go to docs/drive/.
e2e-drive: services
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	cd services/drive/e2e && npm ci --no-audit --no-fund
	$(WITH_SERVICES) DRIVE_SCREENSHOTS=$(CURDIR)/docs/drive \
		cargo test -p homeserver --test it -- --ignored --exact drive::browser_session_in_chromium --nocapture

# WebDAV against real Debian clients (installed with apt when missing): the litmus
# suites basic, copymove, props and locks on /dav/<user>/pub/, rclone copying 1,000
# files up and back, a scripted cadaver session. The summary lines are in the README.
e2e-dav: services
	command -v litmus >/dev/null && command -v rclone >/dev/null && command -v cadaver >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y litmus rclone cadaver)
	$(WITH_SERVICES) cargo test -p homeserver --test it -- --ignored --exact \
		dav_clients::litmus_rclone_and_cadaver --nocapture

# The backup and restore drill at scale (docs/backup.md): DRILL_WRITES files written by
# 8 users while `homeserver backup` runs, then NATS, Postgres, the blobs and the key
# wiped, restored, the projections rebuilt, and every write acknowledged before the
# backup read back. A release build, as the benchmarks; the figures go into the
# README.
DRILL_WRITES ?= 100000
drill-backup: services
	$(WITH_SERVICES) DRILL_WRITES=$(DRILL_WRITES) cargo test --release -p homeserver --test it -- \
		--ignored --exact recovery::backup_drill_at_scale --nocapture

# Credible exit at scale (docs/export.md): one user of EXIT_BENCH_ENTRIES files loaded
# into one `homeserver all` process, exported (operator command and paged HTTP) and
# imported into a second one; roots compared, files read back, times and RSS printed.
EXIT_BENCH_ENTRIES ?= 100000
bench-exit: services
	$(WITH_SERVICES) EXIT_BENCH_ENTRIES=$(EXIT_BENCH_ENTRIES) cargo test -p homeserver --test it -- \
		--ignored --exact exit_bench::exit_bench --nocapture

# The parsers that face request bytes (tokens, JWS, capabilities, paths, query strings
# and cursors, limits and rates, If headers, Merkle nodes and proofs, move statements,
# archives) over generated input: no panic, and every refusal the spec's status and
# text. The same properties run in `make test` with fewer cases (proptest's 256, the
# domain's 50,000). On stable Rust: property tests, not a coverage-guided fuzzer.
FUZZ_CASES ?= 300000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --workspace --lib --test it -- \
		never_panic only_while_unchanged --nocapture

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# The reference homeserver of `make bench-compare`, built once from crates.io into
# .tools/ (a release build of its whole dependency tree: 10+ minutes on two cores).
REFERENCE_VERSION := 0.17.1
REFERENCE_ROOT := .tools/pubky-homeserver-$(REFERENCE_VERSION)
REFERENCE_BIN := $(REFERENCE_ROOT)/bin/pubky-homeserver

$(REFERENCE_BIN):
	cargo install --locked --version $(REFERENCE_VERSION) --root $(REFERENCE_ROOT) pubky-homeserver

# Quick mode by default (a few minutes); BENCH_ARGS='--full' for the real workloads.
bench:
	$(SERVICES) up
	cargo build --release -p homeserver -p hs-bench
	$(WITH_SERVICES) target/release/hs-bench run $(BENCH_ARGS)

# Mirroring from the reference homeserver into ours (docs/mirror.md, "Sources"): the
# reference as a process, a user writing through the published SDK, our mirror's
# listing and bytes compared with it after the copy and after live changes.
e2e-reference-mirror: $(REFERENCE_BIN)
	$(SERVICES) up
	$(WITH_SERVICES) REFERENCE_BIN=$(CURDIR)/$(REFERENCE_BIN) cargo test -p homeserver --test it -- \
		--ignored --exact mirror_reference::the_reference_homeserver_is_mirrored_and_followed --nocapture
bench-compare: $(REFERENCE_BIN)
	$(SERVICES) up
	cargo build --release -p homeserver -p hs-bench
	$(WITH_SERVICES) target/release/hs-bench compare --reference-bin $(REFERENCE_BIN) $(BENCH_ARGS)

# 30 minutes of mixed load on `homeserver all` (bench/src/soak.rs): RSS, open files and
# threads sampled every 10 s; fails unless flat after the warm-up. SOAK_BIN to soak
# another build (a debug one, say).
SOAK_MINUTES ?= 30
SOAK_BIN ?= target/release/homeserver
soak:
	$(SERVICES) up
	cargo build --release -p hs-bench $(if $(filter target/release/homeserver,$(SOAK_BIN)),-p homeserver)
	$(WITH_SERVICES) target/release/hs-bench soak --minutes $(SOAK_MINUTES) --ours-bin $(SOAK_BIN)

# Split deployment (docker-compose.yml) through scripts/compose.sh: official images
# where a registry answers, else local ones (a debootstrapped Debian base, and the
# homeserver image around HS_BINARY, a release build of this checkout by default).
up:
	scripts/compose.sh up

down:
	scripts/compose.sh down

e2e-compose:
	scripts/e2e-compose.sh
