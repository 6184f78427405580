/* fuzz_sd_prompt.c - libFuzzer target for the A1111 prompt parser and CLIP chunking
 * (core/diffusion/prompt.c).
 *
 * Input layout: byte 0 picks the chunk limit (1 + b % 40, so past the default 32 too) and the
 * pad id (bit 7: 0 as SD 2.x, else EOS); the rest is the prompt (NUL bytes end it early, as
 * they would for a C string).
 * Invariants checked (abort = crash report): parsing never fails but for memory; at least one
 * segment; a segment is a break exactly when its text is "BREAK" and its weight -1; the text of
 * all segments together is no longer than the prompt (syntax only removes bytes); tokenizing
 * returns 0 or MX_ERANGE; every chunk is BOS, ids inside the vocabulary, EOS, then only pads,
 * with weight 1 on BOS, EOS and pads; the chunk count is within the limit. <lora:NAME:W> tags
 * (mx_sd_prompt_loras): 0 or MX_EINVAL (nothing returned then), the stripped prompt no longer
 * than the prompt, names non-empty, weights finite.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/prompt.h"
#include "core/text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mx_tokenizer *tok;

static void die(const char *what) {
    fprintf(stderr, "fuzz_sd_prompt: invariant broken: %s\n", what);
    abort();
}

/* A hand-made CLIP vocabulary (cat, dog, the byte tokens, ",</w>"), built once. */
static void init(void) {
    if (tok)
        return;
    const char *text = "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\nB R\nBR E\nb r\nbr e\n";
    if (mx_clip_tokenizer_from_merges(text, strlen(text), &tok, NULL) < 0)
        die("tokenizer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size < 1)
        return 0;
    int max_chunks = 1 + data[0] % 40;
    int32_t eos = mx_tokenizer_eos(tok), bos = mx_tokenizer_bos(tok);
    int32_t pad = (data[0] & 0x80) ? 0 : eos;
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    size_t len = strlen(s);

    struct mx_sd_prompt p;
    int rc = mx_sd_prompt_parse(s, &p, NULL);
    if (rc == MX_ENOMEM) {
        free(s);
        return 0;
    }
    if (rc != 0 || p.n < 1)
        die("parse result");
    size_t total = 0;
    for (int64_t i = 0; i < p.n; i++) {
        if (!p.segs[i].text)
            die("segment text");
        bool brk = !strcmp(p.segs[i].text, "BREAK") && p.segs[i].weight == -1.0;
        if (brk != p.segs[i].is_break)
            die("is_break");
        if (!brk)
            total += strlen(p.segs[i].text);
    }
    if (total > len)
        die("segments longer than the prompt");
    mx_sd_prompt_deinit(&p);

    char *stripped;
    struct mx_sd_lora_tag *tags;
    int n_tags;
    rc = mx_sd_prompt_loras(s, &stripped, &tags, &n_tags, NULL);
    if (rc == 0) {
        if (!stripped || strlen(stripped) > len)
            die("stripped prompt");
        for (int i = 0; i < n_tags; i++)
            if (!tags[i].name || !tags[i].name[0] || !isfinite(tags[i].w_te) ||
                !isfinite(tags[i].w_unet))
                die("lora tag");
        free(stripped);
        mx_sd_lora_tags_free(tags, n_tags);
    } else if (rc != MX_EINVAL && rc != MX_ENOMEM) {
        die("lora tags result");
    } else if (stripped || tags || n_tags) {
        die("lora tags left on failure");
    }

    struct mx_sd_prompt_tokens t;
    rc = mx_sd_prompt_tokenize(tok, s, pad, max_chunks, &t, NULL);
    free(s);
    if (rc == MX_ERANGE || rc == MX_ENOMEM) {
        if (t.ids || t.w || t.n_chunks)
            die("output left on failure");
        return 0;
    }
    if (rc != 0 || t.n_chunks < 1 || t.n_chunks > max_chunks)
        die("chunk count");
    int32_t n_vocab = mx_tokenizer_n_vocab(tok);
    for (int64_t c = 0; c < t.n_chunks; c++) {
        const int32_t *ids = t.ids + c * MX_SD_CHUNK_LEN;
        const float *w = t.w + c * MX_SD_CHUNK_LEN;
        if (ids[0] != bos || w[0] != 1.0f)
            die("chunk start");
        int k = 1;
        while (k < MX_SD_CHUNK_LEN - 1 && ids[k] != eos) {
            if (ids[k] < 0 || ids[k] >= n_vocab || ids[k] == bos)
                die("content id");
            k++;
        }
        if (ids[k] != eos || w[k] != 1.0f)
            die("chunk EOS");
        for (k++; k < MX_SD_CHUNK_LEN; k++)
            if (ids[k] != pad || w[k] != 1.0f)
                die("padding");
    }
    mx_sd_prompt_tokens_deinit(&t);
    return 0;
}
