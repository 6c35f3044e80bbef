# gongji — developer / CI entry points.
SHELL := /bin/bash

PORT ?= 8000
PYTEST_ARGS ?=
VENV := .venv
PG_INITDB := /usr/lib/postgresql/15/bin/initdb
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc  # Chinese glyphs in the dashboard screenshots

.PHONY: venv system-deps bench-deps test run bench clean translations promtool

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if python3.11 -c 'pass' >/dev/null 2>&1; then py=python3.11; else py=python3; fi; \
	if [ ! -x $(VENV)/bin/python ]; then echo "$$py -m venv $(VENV)"; $$py -m venv $(VENV); fi
	$(VENV)/bin/pip install -e '.[test,bench]'
	touch $@

system-deps:
	@pkgs=""; \
	if ! command -v redis-server >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then \
		pkgs="redis-server chromium"; \
	fi; \
	if [ ! -e $(CJK_FONT) ]; then pkgs="$$pkgs fonts-wqy-microhei"; fi; \
	if [ ! -x $(PG_INITDB) ]; then pkgs="$$pkgs postgresql-15"; fi; \
	if [ -n "$$pkgs" ]; then \
		sudo=""; \
		if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi; \
		echo "installing system packages:$$pkgs"; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $$pkgs; \
	fi

# promtool checks and unit-tests docs/alerts.yml (tests/integration/test_alert_rules.py): taken from Debian's
# prometheus package without installing it (no server, no service: the one binary, into the venv)
promtool: $(VENV)/bin/promtool

$(VENV)/bin/promtool: | venv
	@if command -v promtool >/dev/null 2>&1; then ln -sf "$$(command -v promtool)" $@; else \
		tmp=$$(mktemp -d); chmod 755 $$tmp; \
		(cd $$tmp && (apt-get download prometheus || \
			{ sudo=""; if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi; \
			  $$sudo apt-get update && apt-get download prometheus; })) && \
		dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/x && cp $$tmp/x/usr/bin/promtool $@; \
		status=$$?; rm -rf $$tmp; exit $$status; \
	fi

test: venv system-deps promtool
	scripts/services.sh $(VENV)/bin/python -m pytest tests -q -p no:cacheprovider $(PYTEST_ARGS)

run: venv
	$(VENV)/bin/gongji serve --port $(PORT)

bench-deps: system-deps
	@if ! command -v wrk >/dev/null 2>&1; then \
		sudo=""; \
		if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi; \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; \
	fi

bench: venv bench-deps
	GONGJI_PG_DURABLE=1 scripts/services.sh bash -c \
		'$(VENV)/bin/python bench/transitions.py && $(VENV)/bin/python bench/webhooks.py && \
		 $(VENV)/bin/python bench/dashboard.py'

clean:
	rm -rf $(VENV) var build dist *.egg-info .pytest_cache .hypothesis test-results
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

# after changing a marked text: refresh the zh_CN catalog, translate new entries in messages.po, compile
translations: venv
	$(VENV)/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o web/translations/messages.pot .
	$(VENV)/bin/pybabel update -i web/translations/messages.pot -d web/translations -l zh_Hans_CN --width 100
	$(VENV)/bin/pybabel compile -d web/translations
