#!/bin/sh
# engine_resume16k.sh - resume of a 16K-token history: KV snapshot vs re-prefill, on
# tiny-mixtral-64k-f32 (prints the times; fails if the resumed logits differ). Optional, not in
# TESTS: the re-prefill takes minutes on a small CPU. Run from the build dir:
#   MX_SHARED=../shared sh $srcdir/tests/engine_resume16k.sh
# Needs the core/llama cache-state functions (see app/engine_llm.c); exits 77 without them.
if [ -z "$MX_SHARED" ] || [ ! -f "$MX_SHARED/models/tiny-mixtral-64k-f32.gguf" ]; then
    echo "SKIP: needs \$MX_SHARED/models/tiny-mixtral-64k-f32.gguf"
    exit 77
fi
bin="${MX_BUILDDIR:-.}/tests/test_engine_llm"
if [ ! -x "$bin" ]; then
    echo "SKIP: $bin not built (make check builds it)"
    exit 77
fi
out=$("$bin" --bench16k)
rc=$?
echo "$out"
case "$out" in
*"cannot save the KV cache"*|*"cannot load a KV cache"*) exit 77 ;;
esac
exit $rc
