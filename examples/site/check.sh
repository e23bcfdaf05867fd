#!/bin/sh
# The example site, built and looked at (README, "Example site"): an offline crawl with a few
# models a filter into public/manifests, `next build` (a static export in out/), then check.mjs
# opens the home page, a filter page and a model page in Chromium, checks them against the
# crawler's files and saves screenshots/ (git-ignored).
# Needs: the project's virtual environment active (python3 runs the crawler), Node.js 20+,
# this folder's npm packages (npm ci; done here if missing) and Debian's chromium
# (/usr/bin/chromium, or CHROMIUM=<path>). MANIFEST_MAX_ITEMS (default 3) sizes the crawl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "error: no Chromium at $chromium: apt-get install chromium (or set CHROMIUM)" >&2
  exit 2
fi
[ -d "$here/node_modules" ] || npm ci --prefix "$here" --no-audit --no-fund
export FILTERS_FILE="$root/filters.json" MANIFEST_DIR="$here/public/manifests"
export CHROMIUM="$chromium" NEXT_TELEMETRY_DISABLED=1
rm -rf "$MANIFEST_DIR" "$here/.next" "$here/out" "$here/screenshots"

cd "$root"
python3 -m scrapy crawl all -L WARNING -s MANIFEST_OFFLINE=true \
  -s "MANIFEST_MAX_ITEMS=${MANIFEST_MAX_ITEMS:-3}" -s "MANIFEST_DIR=$MANIFEST_DIR" \
  -s "FILTERS_FILE=$FILTERS_FILE"

cd "$here"
started=$(date +%s%N)
node_modules/.bin/next build
echo "site build (next build): $(( ($(date +%s%N) - started) / 1000000 )) ms"

# The check must be able to fail: against files whose manifests list their models in another
# order, or an export missing a model's page, it does.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -R "$MANIFEST_DIR" "$scratch/reordered"
python3 - "$scratch/reordered" <<'PY'
import json, pathlib, sys
folder = pathlib.Path(sys.argv[1])
for entry in json.loads((folder / "index.json").read_text())["filters"]:
    if entry["models"]:
        path = folder / entry["file"]
        manifest = json.loads(path.read_text())
        manifest["models"].reverse()
        path.write_text(json.dumps(manifest))
PY
if MANIFEST_DIR="$scratch/reordered" SCREENSHOTS="$scratch/shots" node check.mjs 2>/dev/null; then
  echo "error: the site check passed a site that shows the models in another order" >&2
  exit 1
fi
page=$(find out/models -name index.html | head -n 1)
mv "$page" "$scratch/page.html"
if SCREENSHOTS="$scratch/shots" node check.mjs 2>/dev/null; then
  echo "error: the site check passed an export missing $page" >&2
  exit 1
fi
mv "$scratch/page.html" "$page"
echo "the site check refuses a wrong order and a missing page"

node check.mjs
