#!/bin/sh
# Regenerates the text screenshots in this directory: runs the tmux end-to-end test
# (tests/tui_tmux.rs), which saves the 80x24 screen of each main step here as NAME.txt, and
# for some also NAME.ansi with the colours (`cat NAME.ansi` in a terminal shows them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
rm -f "$here"/*.txt "$here"/*.ansi
SIPTERM_SCREENSHOTS="$here" cargo test --test tui_tmux -- --nocapture
