#!/bin/sh
# make_goldens.sh - regenerates the llama.cpp goldens of tests/arch_peer.sh: for each arch and
# type, the tiny random model from tests/arch_gguf.py (seeded: the same bytes every time, their
# sha256 in SHA256SUMS) is evaluated by the peer driver on prompts.rec:
#   llref MODEL eval -n 16 < prompts.rec | gzip -n > <arch>-<type>.txt.gz
# (2 threads, F32 KV cache, n_ctx 2048, repacking on: llref's defaults, the settings of
# ../shared/refs/llm). Peer: ../shared/tools/peer-llama (node-llama-cpp 3.21.1, llama.cpp v0.4.0).
# usage: MX_LLREF=/path/to/llref MX_SHARED=/path/to/shared tests/golden/arch/make_goldens.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
llref=${MX_LLREF:?set MX_LLREF to the peer driver}
: "${MX_SHARED:?set MX_SHARED}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/sums"
for arch in qwen2moe qwen3moe olmoe granitemoe llama; do
    for type in F32 Q4_0; do
        t=$(echo "$type" | tr 'A-Z' 'a-z')
        m="$tmp/$arch-$t.gguf"
        /usr/bin/python3 "$here/../../arch_gguf.py" "$arch" "$m" --type "$type" --shared "$MX_SHARED"
        (cd "$tmp" && sha256sum "$arch-$t.gguf") >> "$tmp/sums"
        "$llref" "$m" eval -n 16 < "$here/prompts.rec" 2>/dev/null | gzip -n -9 > "$here/$arch-$t.txt.gz"
        echo "$arch-$t: $(zcat "$here/$arch-$t.txt.gz" | grep -c LOGITS) rows"
    done
done
cp "$tmp/sums" "$here/SHA256SUMS"
