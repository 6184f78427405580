#!/bin/sh
# llama_src.sh - prints the path of llama.cpp's source tree matching the peer (node-llama-cpp
# 3.21.1, llama.cpp release v0.4.0), whose models/ folder holds llama.cpp's real vocabularies
# (ggml-vocab-*.gguf) and its own test vectors (.inp/.out) for tests/tok_vocab.sh and
# tests/tok_peer.sh. Looked for in order:
#   $MX_LLAMA_SRC                              when set
#   ~/.cache/mixel-peer/src                    what ../shared/tools/peer-llama/build.sh clones
#   ${XDG_CACHE_HOME:-~/.cache}/mixel-tests/llama-src
#                                              else fetched there once: `npm pack` of
#                                              node-llama-cpp@3.21.1 (one 40 MB tarball, no
#                                              dependencies, no install scripts) and a
#                                              `git clone` of the llama/gitRelease.bundle it
#                                              carries; parallel tests wait on one lock
# Exit 77 (Automake's skip) with the reason on stderr when npm, git or the registry is not
# available; exit 1 when a fetched tree has no vocabularies.
set -eu
VOCAB=models/ggml-vocab-gpt-2.gguf
PKG=node-llama-cpp@3.21.1
if [ -n "${MX_LLAMA_SRC:-}" ]; then
    if [ ! -f "$MX_LLAMA_SRC/$VOCAB" ]; then
        echo "llama_src.sh: MX_LLAMA_SRC=$MX_LLAMA_SRC has no $VOCAB" >&2
        exit 1
    fi
    echo "$MX_LLAMA_SRC"
    exit 0
fi
if [ -n "${HOME:-}" ] && [ -f "$HOME/.cache/mixel-peer/src/$VOCAB" ]; then
    echo "$HOME/.cache/mixel-peer/src"
    exit 0
fi
base=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/mixel-tests
dir=$base/llama-src
if [ -f "$dir/$VOCAB" ] && [ -f "$dir.ok" ]; then
    echo "$dir"
    exit 0
fi
for tool in npm git tar flock; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: '$tool' is needed to fetch llama.cpp's vocabularies ($PKG); or set" \
             "MX_LLAMA_SRC to a llama.cpp source tree" >&2
        exit 77
    fi
done
mkdir -p "$base"
(
    flock 9
    if [ ! -f "$dir.ok" ]; then
        tmp=$(mktemp -d "$base/.llama-src.XXXXXX")
        trap 'rm -rf "$tmp"' EXIT
        if ! (cd "$tmp" && npm pack --silent "$PKG" >npm.log 2>&1); then
            echo "SKIP: npm pack $PKG failed (registry unreachable?):" \
                 "$(tail -n 2 "$tmp/npm.log")" >&2
            exit 77
        fi
        tar -xzf "$tmp"/node-llama-cpp-*.tgz -C "$tmp" package/llama/gitRelease.bundle
        rm -rf "$dir"
        git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$dir"
        if [ ! -f "$dir/$VOCAB" ]; then
            echo "llama_src.sh: the clone of $PKG's bundle has no $VOCAB" >&2
            exit 1
        fi
        touch "$dir.ok"
    fi
) 9>"$base/.llama-src.lock"
echo "$dir"
