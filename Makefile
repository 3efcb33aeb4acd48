# Natter — the two commands the README promises, and their helpers.
#   make demo    private Prosody + demo accounts + Natter signed in as demo@localhost
#   make check   install what is missing, then fmt, clippy and every test
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps build demo check fmt clippy test validate bench clean

all: build

deps:
	@./build-aux/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

demo: deps
	$(CARGO) build -p natter -p natter-testkit --bins
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		./target/debug/natter-testkit demo --app ./target/debug/natter; \
	else \
		echo "No display: running the demo under Xvfb (xvfb-run)"; \
		xvfb-run -a -s "-screen 0 1280x800x24" ./target/debug/natter-testkit demo --app ./target/debug/natter; \
	fi

fmt: deps
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy --workspace --all-targets -- -D warnings

validate: deps
	desktop-file-validate data/im.natter.Natter.desktop
	appstreamcli validate --no-net --explain data/im.natter.Natter.metainfo.xml
	glib-compile-schemas --strict --dry-run data
	./build-aux/check-potfiles.sh

test: deps
	$(CARGO) test --workspace --all-targets

check: fmt clippy validate test

bench: deps
	$(CARGO) bench --workspace

clean:
	$(CARGO) clean
