#!/usr/bin/env bash
# Starts kiln for a relay benchmark harness: it writes a config from the
# harness's variables and runs kiln in the foreground.
#   SUBMIT_PORT  port to accept on (127.0.0.1)
#   SINK_ADDR    host:port every message is relayed to
#   MTA_DIR      an empty directory for the queue
#   KILN         the kiln binary (default: kiln next to this script's repo)
#   KILN_EXTRA   extra TOML appended to the config (e.g. DKIM keys)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KILN=${KILN:-$here/../kiln}
cat >"$MTA_DIR/kiln.toml" <<CONF
data_dir = "$MTA_DIR/data"
[submission]
listen = ["127.0.0.1:$SUBMIT_PORT"]
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
events = ""
[[route]]
domain = "*"
smarthost = "$SINK_ADDR"
${KILN_EXTRA:-}
CONF
exec "$KILN" serve --config "$MTA_DIR/kiln.toml"
