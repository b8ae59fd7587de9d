#!/usr/bin/env bash
# Install Debian's `chromium` (headless browser for tests/test_report.py, driven by Playwright with the system
# browser as its executable: Playwright cannot download its own here) when it is missing. Meant to be
# `source`d by .ci/run (it must not change the caller's shell options) and runnable on its own.

_st_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  echo "chromium.sh: installing chromium (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || return 1
}

# A failed install leaves the browser test skipped (it says no browser exists), not the whole run failed.
_st_chromium || echo "chromium.sh: chromium could not be installed; the browser test will be skipped" >&2
unset -f _st_chromium
