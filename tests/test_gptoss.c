/* test_gptoss.c - the gpt-oss architecture end to end against llama.cpp.
 *
 * The model: a tiny random-weight GGUF written here (write_model, deterministic: splitmix64
 * seeds) with llama.cpp's names and metadata for arch "gpt-oss" (LLM_ARCH_OPENAI_MOE): q/k/v/o
 * biases, attention sinks, post_attention_norm, a biased router, 4 experts top-2 in MXFP4 (as
 * convert_hf_to_gguf.py writes gpt-oss's experts) with F32 biases, alternating sliding-window
 * (window 4) and full layers, NEOX rope with YaRN (factor 32 from 64), q width 4 x 32 != n_embd
 * 64, and a byte-level BPE vocabulary with gpt-oss's harmony special tokens.
 *
 * The peer: tests/golden/gptoss/peer_eval.txt is llama.cpp's output (node-llama-cpp 3.21.1's
 * libllama through ../shared/tools/peer-llama/llref, mode evalids, KV F32) for token sequences
 * on this model, made by tests/golden/gptoss/make_goldens.sh. With MX_LLREF set (the peer built
 * here) the test also runs the peer now and checks against its fresh output.
 *
 * Checks: every prompt row's logits within TOL of the peer; the 16 greedy ids equal; each greedy
 * step's top logit within TOL; teacher-forced with the peer's ids in one batch, the prompt rows
 * and the chosen ids' logits within TOL_TF. The sliding-window layers' trimmed KV cache (window +
 * ubatch cells, llama.cpp's SWA cache) gives the full cache's logits (to the bit but for BLAS's
 * float order: rows_match), unsplit and on a
 * model split between two CPU backends (one playing the device), through snapshots, removals
 * and a context shift; the memory plan equals what is allocated.
 * The activations before the MXFP4 expert matmuls are rounded to Q8_0 in both engines (the
 * integer dots are exact), so the engines differ only by float summation order (~1e-6), which
 * can flip one Q8_0 rounding (~1e-3 on a logit): TOL = 2e-3, see refs/llm/README.md.
 *
 * `test_gptoss --write-model PATH` writes the model (for make_goldens.sh).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/llm.h"
#include "core/base/quant.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/text/tokenizer.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

#define TOL 2e-3
/* Teacher-forced, the batch is longer than the peer's (prompt + 16 ids), so each expert gets
 * more columns and the matmuls block differently: one flipped Q8_0 rounding, amplified by a
 * near-tied expert choice, measured up to 0.04 here (llama.cpp's own batch vs token-by-token
 * differs by 0.19 on tiny-mixtral-q4_0, refs/llm/README.md). */
#define TOL_TF 0.1

/* Model shape (small, but every gpt-oss feature present). */
enum { E = 64, NH = 4, NKV = 2, HD = 32, F = 64, X = 4, XU = 2, NL = 2, WIN = 4, CTX = 256 };

/* The harmony special tokens, after the 256 byte tokens (the real vocabulary's names). */
static const char *const specials[] = {
    "<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>",
    "<|start|>",       "<|end|>",       "<|message|>", "<|call|>",
};
/* A few merges so the BPE vocabulary is not bytes only (pieces in GPT-2's byte alphabet). */
static const char *const merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n", "a n", "e r"};
static const char *const merged[] = {"\xc4\xa0t", "he", "\xc4\xa0the", "in", "an", "er"};
#define N_VOCAB (256 + (int)MX_ARRAY_LEN(specials) + (int)MX_ARRAY_LEN(merges))

static const char *model_path;
static char model_buf[256];

/* GPT-2's byte-to-unicode map: printable bytes stand for themselves, the others for 256 + k. */
static void byte_piece(int b, char out[4]) {
    int cp = b, k = 0;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        for (int c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)))
                k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3f)), out[2] = 0;
    }
}

/* n random floats in [-scale, scale). */
static float *rnd(uint64_t *s, int64_t n, float scale) {
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = mx_test_randf(s) * scale;
    return v;
}

static void add_f32(struct mx_gguf_writer *w, const char *name, int nd, int64_t n0, int64_t n1,
                    int64_t n2, float *v) {
    int64_t ne[3] = {n0, n1, n2};
    assert_int_equal(mx_gguf_writer_add_tensor(w, name, MX_TYPE_F32, nd, ne, v), 0);
    free(v);
}

/* The expert matrices [n0, n1, X] quantized to MXFP4 row by row. */
static void add_mxfp4(struct mx_gguf_writer *w, const char *name, int64_t n0, int64_t n1,
                      float *v) {
    int64_t ne[3] = {n0, n1, X};
    size_t row;
    assert_true(mx_row_size(MX_TYPE_MXFP4, n0, &row));
    char *q = malloc(row * (size_t)(n1 * X));
    assert_non_null(q);
    for (int64_t r = 0; r < n1 * X; r++)
        assert_int_equal(mx_quantize_row(MX_TYPE_MXFP4, v + r * n0, q + r * row, n0), 0);
    assert_int_equal(mx_gguf_writer_add_tensor(w, name, MX_TYPE_MXFP4, 3, ne, q), 0);
    free(q);
    free(v);
}

static int write_model(const char *path) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    const char *a = "gpt-oss";
    char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, a), k)
    mx_gguf_writer_set_str(w, "general.architecture", a);
    mx_gguf_writer_set_str(w, "general.name", "mixel-test-gpt-oss-tiny");
    mx_gguf_writer_set_u32(w, KEY("context_length"), CTX);
    mx_gguf_writer_set_u32(w, KEY("embedding_length"), E);
    mx_gguf_writer_set_u32(w, KEY("block_count"), NL);
    mx_gguf_writer_set_u32(w, KEY("feed_forward_length"), F);
    mx_gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), F);
    mx_gguf_writer_set_u32(w, KEY("attention.head_count"), NH);
    mx_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), NKV);
    mx_gguf_writer_set_u32(w, KEY("attention.key_length"), HD);
    mx_gguf_writer_set_u32(w, KEY("attention.value_length"), HD);
    mx_gguf_writer_set_u32(w, KEY("attention.sliding_window"), WIN);
    mx_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    mx_gguf_writer_set_u32(w, KEY("expert_count"), X);
    mx_gguf_writer_set_u32(w, KEY("expert_used_count"), XU);
    mx_gguf_writer_set_f32(w, KEY("rope.freq_base"), 150000.0f);
    mx_gguf_writer_set_str(w, KEY("rope.scaling.type"), "yarn");
    mx_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), 32.0f);
    mx_gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"), 64);
#undef KEY
    /* the vocabulary */
    const char *toks[N_VOCAB];
    char bytes[256][4];
    int32_t types[N_VOCAB];
    for (int b = 0; b < 256; b++) {
        byte_piece(b, bytes[b]);
        toks[b] = bytes[b];
        types[b] = 1; /* normal */
    }
    for (size_t i = 0; i < MX_ARRAY_LEN(specials); i++) {
        toks[256 + i] = specials[i];
        types[256 + i] = 3; /* control */
    }
    for (size_t i = 0; i < MX_ARRAY_LEN(merged); i++) {
        toks[256 + MX_ARRAY_LEN(specials) + i] = merged[i];
        types[256 + MX_ARRAY_LEN(specials) + i] = 1;
    }
    mx_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    mx_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-4o");
    mx_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, N_VOCAB);
    mx_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", MX_GGUF_INT32, types, N_VOCAB);
    mx_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, MX_ARRAY_LEN(merges));
    mx_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256);
    mx_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 258);
    mx_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 257);
    mx_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    /* the lines of gpt-oss's published template that name its family (template.c) */
    mx_gguf_writer_set_str(w, "tokenizer.chat_template",
                           "{{- \"<|start|>system<|message|>\" }}{{- build_system_message() }}"
                           "{{- \"<|end|>\" }}{{- \"<|start|>assistant<|channel|>final"
                           "<|message|>\" + message.content + \"<|end|>\" }}");

    /* weights: scales keep the activations of order 1 and the router decisive (gain 3) */
    uint64_t s = 0x6770746f7373ull; /* "gptoss" */
    const float wq = 1.7f / sqrtf((float)E), wo = 1.7f / sqrtf((float)(NH * HD));
    const float wf = 1.7f / sqrtf((float)F);
    add_f32(w, "token_embd.weight", 2, E, N_VOCAB, 1, rnd(&s, (int64_t)E * N_VOCAB, 1.0f));
    for (int il = 0; il < NL; il++) {
        char n[96];
#define NM(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, il), n)
        float *nw = rnd(&s, E, 0.2f);
        for (int i = 0; i < E; i++)
            nw[i] += 1.0f;
        add_f32(w, NM("attn_norm.weight"), 1, E, 1, 1, nw);
        add_f32(w, NM("attn_q.weight"), 2, E, NH * HD, 1, rnd(&s, E * NH * HD, wq));
        add_f32(w, NM("attn_q.bias"), 1, NH * HD, 1, 1, rnd(&s, NH * HD, 0.1f));
        add_f32(w, NM("attn_k.weight"), 2, E, NKV * HD, 1, rnd(&s, E * NKV * HD, wq));
        add_f32(w, NM("attn_k.bias"), 1, NKV * HD, 1, 1, rnd(&s, NKV * HD, 0.1f));
        add_f32(w, NM("attn_v.weight"), 2, E, NKV * HD, 1, rnd(&s, E * NKV * HD, wq));
        add_f32(w, NM("attn_v.bias"), 1, NKV * HD, 1, 1, rnd(&s, NKV * HD, 0.1f));
        add_f32(w, NM("attn_output.weight"), 2, NH * HD, E, 1, rnd(&s, NH * HD * E, wo));
        add_f32(w, NM("attn_output.bias"), 1, E, 1, 1, rnd(&s, E, 0.1f));
        add_f32(w, NM("attn_sinks.weight"), 1, NH, 1, 1, rnd(&s, NH, 2.0f));
        nw = rnd(&s, E, 0.2f);
        for (int i = 0; i < E; i++)
            nw[i] += 1.0f;
        add_f32(w, NM("post_attention_norm.weight"), 1, E, 1, 1, nw);
        add_f32(w, NM("ffn_gate_inp.weight"), 2, E, X, 1, rnd(&s, E * X, 3.0f * wq));
        add_f32(w, NM("ffn_gate_inp.bias"), 1, X, 1, 1, rnd(&s, X, 0.5f));
        add_mxfp4(w, NM("ffn_gate_exps.weight"), E, F, rnd(&s, (int64_t)E * F * X, wq));
        add_f32(w, NM("ffn_gate_exps.bias"), 2, F, X, 1, rnd(&s, F * X, 0.1f));
        add_mxfp4(w, NM("ffn_up_exps.weight"), E, F, rnd(&s, (int64_t)E * F * X, wq));
        add_f32(w, NM("ffn_up_exps.bias"), 2, F, X, 1, rnd(&s, F * X, 0.1f));
        add_mxfp4(w, NM("ffn_down_exps.weight"), F, E, rnd(&s, (int64_t)F * E * X, wf));
        add_f32(w, NM("ffn_down_exps.bias"), 2, E, X, 1, rnd(&s, E * X, 0.1f));
#undef NM
    }
    float *nw = rnd(&s, E, 0.2f);
    for (int i = 0; i < E; i++)
        nw[i] += 1.0f;
    add_f32(w, "output_norm.weight", 1, E, 1, 1, nw);
    add_f32(w, "output.weight", 2, E, N_VOCAB, 1, rnd(&s, (int64_t)E * N_VOCAB, 2.0f * wq));
    struct mx_err err = {0};
    int rc = mx_gguf_writer_write(w, path, 3, &err);
    if (rc < 0)
        fprintf(stderr, "write_model: %s\n", err.msg);
    mx_gguf_writer_free(w);
    return rc;
}

/* ---- the peer's output ---------------------------------------------------------------------- */

/* One record of llref's eval output. */
struct peer_case {
    int32_t ids[64];     /* TOK */
    int n_ids;
    float *logits;       /* [n_ids][N_VOCAB] LOGITS rows */
    int32_t gen[64];     /* GEN ids */
    float gen_top1[64];  /* GEN top-1 logit */
    float gen_top2[64];
    int n_gen;
};

/* Parses llref eval/evalids output (TOK / LOGITS / GEN / TEXT lines) into at most cap cases.
 * Returns the number of cases. */
static int parse_peer(const char *path, struct peer_case *cs, int cap) {
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot read %s", path);
    size_t lcap = 1 << 16;
    char *line = malloc(lcap);
    int n = -1;
    while (fgets(line, (int)lcap, f)) {
        if (!strncmp(line, "TOK", 3)) {
            assert_true(++n < cap);
            memset(&cs[n], 0, sizeof cs[n]);
            char *p = line + 3, *e;
            for (long v; (v = strtol(p, &e, 10)), e != p; p = e) {
                assert_true(cs[n].n_ids < 64);
                cs[n].ids[cs[n].n_ids++] = (int32_t)v;
            }
            cs[n].logits = calloc((size_t)cs[n].n_ids * N_VOCAB, sizeof(float));
        } else if (!strncmp(line, "LOGITS", 6) && n >= 0) {
            char *p = line + 6, *e;
            long pos = strtol(p, &e, 10);
            assert_true(pos >= 0 && pos < cs[n].n_ids);
            p = e;
            for (int j = 0; j < N_VOCAB; j++, p = e) {
                cs[n].logits[pos * N_VOCAB + j] = strtof(p, &e);
                assert_true(e != p);
            }
        } else if (!strncmp(line, "GEN", 3) && n >= 0) {
            struct peer_case *c = &cs[n];
            assert_true(c->n_gen < 64);
            assert_int_equal(sscanf(line + 3, "%d %f %f", &c->gen[c->n_gen],
                                    &c->gen_top1[c->n_gen], &c->gen_top2[c->n_gen]), 3);
            c->n_gen++;
        }
    }
    free(line);
    fclose(f);
    return n + 1;
}

/* Logits rows collected from mx_llama_decode. */
struct rows {
    float *v;
    int64_t n;
};

static int collect(void *ud, int64_t i, const float *logits) {
    struct rows *r = ud;
    memcpy(r->v + i * N_VOCAB, logits, N_VOCAB * sizeof(float));
    r->n = i + 1;
    return 0;
}

static int argmax(const float *l) {
    int b = 0;
    for (int j = 1; j < N_VOCAB; j++)
        if (l[j] > l[b])
            b = j;
    return b;
}

/* mixel against one peer output file. */
static void check_against(const char *peer_file, const char *what) {
    struct peer_case cs[4];
    int n = parse_peer(peer_file, cs, 4);
    assert_true(n >= 2);
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    assert_non_null(be);
    struct mx_llama_model *m = NULL;
    if (mx_llama_model_load(model_path, be, &m, &err) < 0)
        fail_msg("load: %s", err.msg);
    const struct mx_llama_hparams *hp = mx_llama_model_hparams(m);
    assert_true(hp->gptoss);
    assert_int_equal(hp->swa_pattern, 2);
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = CTX;
    p.kv_type = MX_TYPE_F32;
    struct mx_llama_ctx *c = NULL;
    assert_int_equal(mx_llama_ctx_new(m, &p, &c, &err), 0);
    double worst = 0, worst_tf = 0;
    for (int ci = 0; ci < n; ci++) {
        struct peer_case *pc = &cs[ci];
        struct rows r = {calloc((size_t)(pc->n_ids + pc->n_gen) * N_VOCAB, sizeof(float)), 0};
        mx_llama_kv_clear(c);
        /* prompt in one batch, every row */
        if (mx_llama_decode(c, pc->ids, pc->n_ids, true, collect, &r, &err) < 0)
            fail_msg("decode: %s", err.msg);
        for (int i = 0; i < pc->n_ids; i++)
            for (int j = 0; j < N_VOCAB; j++) {
                double d = fabs(r.v[i * N_VOCAB + j] - pc->logits[i * N_VOCAB + j]);
                worst = fmax(worst, d);
                if (d > TOL)
                    fail_msg("%s case %d row %d id %d: %.6g, llama.cpp %.6g", what, ci, i, j,
                             r.v[i * N_VOCAB + j], pc->logits[i * N_VOCAB + j]);
            }
        /* greedy, one token at a time */
        int32_t tok = (int32_t)argmax(r.v + (pc->n_ids - 1) * N_VOCAB);
        for (int k = 0; k < pc->n_gen; k++) {
            const float *l = k == 0 ? r.v + (pc->n_ids - 1) * N_VOCAB : mx_llama_logits(c);
            tok = (int32_t)argmax(l);
            if (tok != pc->gen[k])
                fail_msg("%s case %d greedy step %d: id %d, llama.cpp %d", what, ci, k, tok,
                         pc->gen[k]);
            if (fabs(l[tok] - pc->gen_top1[k]) > TOL)
                fail_msg("%s case %d step %d: top logit %.6g, llama.cpp %.6g", what, ci, k,
                         l[tok], pc->gen_top1[k]);
            assert_int_equal(mx_llama_decode(c, &tok, 1, false, NULL, NULL, &err), 0);
        }
        /* teacher-forced: prompt + the peer's ids in one batch reproduce the prompt rows */
        mx_llama_kv_clear(c);
        int32_t all[128];
        memcpy(all, pc->ids, (size_t)pc->n_ids * 4);
        memcpy(all + pc->n_ids, pc->gen, (size_t)pc->n_gen * 4);
        r.n = 0;
        assert_int_equal(mx_llama_decode(c, all, pc->n_ids + pc->n_gen, true, collect, &r, &err),
                         0);
        for (int i = 0; i < pc->n_ids; i++)
            for (int j = 0; j < N_VOCAB; j++)
                worst_tf = fmax(worst_tf, fabs(r.v[i * N_VOCAB + j] -
                                               pc->logits[i * N_VOCAB + j]));
        for (int k = 0; k + 1 < pc->n_gen; k++) {
            const float *l = r.v + (pc->n_ids + k) * N_VOCAB;
            worst_tf = fmax(worst_tf, fabs(l[pc->gen[k + 1]] - pc->gen_top1[k + 1]));
        }
        free(r.v);
        free(pc->logits);
    }
    printf("%s: %d cases, max |logit - llama.cpp| %.3g (prompt rows), %.3g (teacher-forced)\n",
           what, n, worst, worst_tf);
    assert_true(worst_tf <= TOL_TF);
    mx_llama_ctx_free(c);
    mx_llama_model_free(m);
    mx_backend_free(be);
}

/* The committed golden (llama.cpp's output made by make_goldens.sh). */
static void test_logits_vs_golden(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/tests/golden/gptoss/peer_eval.txt",
             getenv("MX_SRCDIR") ? getenv("MX_SRCDIR") : ".");
    check_against(path, "golden");
}

/* The peer run now, when MX_LLREF names it (the same records as the golden). */
static void test_logits_vs_peer_now(void **state) {
    (void)state;
    const char *llref = getenv("MX_LLREF");
    if (!llref || access(llref, X_OK) != 0) {
        printf("peer: MX_LLREF not set; compared with the committed golden only\n");
        return;
    }
    const char *src = getenv("MX_SRCDIR") ? getenv("MX_SRCDIR") : ".";
    char out[128], cmd[2048];
    snprintf(out, sizeof out, "/tmp/mx-gptoss-peer-%d.txt", (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' '%s' evalids -n 16 -c %d -t 2 < '%s/tests/golden/gptoss/"
             "records.txt' > '%s' 2>/dev/null", llref, model_path, CTX, src, out);
    if (system(cmd) != 0)
        fail_msg("peer failed: %s", cmd);
    check_against(out, "peer now");
    unlink(out);
}

/* Hyperparameters as llama.cpp derives them: NEOX rope, YaRN on (ext 1) with its magnitude
 * factor cancelled to 1, pattern 2, q width 128 on n_embd 64. */
static void test_hparams(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_gguf *g = NULL;
    assert_int_equal(mx_gguf_open(model_path, &g, &err), 0);
    struct mx_llama_hparams hp;
    assert_int_equal(mx_llama_hparams_read(g, &hp, &err), 0);
    assert_int_equal(mx_llama_hparams_validate(&hp, &err), 0);
    assert_string_equal(hp.arch, "gpt-oss");
    assert_true(hp.gptoss);
    assert_int_equal(hp.rope_mode, 2);
    assert_int_equal(hp.sliding_window, WIN);
    assert_int_equal(hp.swa_pattern, 2);
    assert_int_equal(hp.n_ff, F);
    assert_int_equal(hp.head_dim, HD);
    assert_true(fabsf(hp.rope_freq_scale - 1.0f / 32.0f) < 1e-9f);
    assert_true(hp.yarn_ext_factor == 1.0f);
    assert_true(fabsf(hp.yarn_attn_factor - 1.0f) < 1e-6f);
    assert_int_equal(hp.yarn_n_ctx_orig, 64);
    mx_gguf_close(g);
}

/* End of generation as llama.cpp decides it for o200k_harmony: <|return|> and <|call|> end a
 * turn, <|end|> (which closes the analysis channel first) does not. */
static void test_harmony_eog(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_gguf *g = NULL;
    struct mx_tokenizer *t = NULL;
    assert_int_equal(mx_gguf_open(model_path, &g, &err), 0);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &err), 0);
    assert_true(mx_tokenizer_is_eog(t, mx_tokenizer_find(t, "<|return|>", 10)));
    assert_true(mx_tokenizer_is_eog(t, mx_tokenizer_find(t, "<|call|>", 8)));
    int32_t end = mx_tokenizer_find(t, "<|end|>", 7);
    assert_true(end >= 0);
    assert_false(mx_tokenizer_is_eog(t, end));
    mx_tokenizer_free(t);
    mx_gguf_close(g);
}

/* ---- the sliding-window layers' trimmed KV cache ------------------------------------------- */

/* A memory stream for KV snapshots. */
struct membuf {
    char *p;
    size_t n, off;
};

static int mem_write(void *ud, const void *data, size_t n, struct mx_err *err) {
    struct membuf *m = ud;
    char *p = realloc(m->p, m->n + n);
    if (!p)
        return mx_err_set(err, MX_ENOMEM, "snapshot: out of memory");
    m->p = p;
    memcpy(m->p + m->n, data, n);
    m->n += n;
    return 0;
}

static int mem_read(void *ud, void *data, size_t n, struct mx_err *err) {
    struct membuf *m = ud;
    if (m->off + n > m->n)
        return mx_err_set(err, MX_EFORMAT, "short snapshot");
    memcpy(data, m->p + m->off, n);
    m->off += n;
    return 0;
}

/* Decodes ids[0..n) one token per call into r (rows from row0). */
static void decode_each(struct mx_llama_ctx *c, const int32_t *ids, int n, struct rows *r,
                        int64_t row0) {
    struct mx_err err = {0};
    for (int i = 0; i < n; i++) {
        if (mx_llama_decode(c, ids + i, 1, false, NULL, NULL, &err) < 0)
            fail_msg("decode: %s", err.msg);
        memcpy(r->v + (row0 + i) * N_VOCAB, mx_llama_logits(c), N_VOCAB * sizeof(float));
    }
}

/* Whether rows [0, n_rows) of a and b are equal to the bit; else prints the first difference. */
static bool rows_same(const float *a, const float *b, int64_t n_rows, const char *what) {
    for (int64_t i = 0; i < n_rows * N_VOCAB; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) != 0) {
            print_message("  %s: row %lld logit %lld: %.9g != %.9g\n", what,
                          (long long)(i / N_VOCAB), (long long)(i % N_VOCAB), a[i], b[i]);
            return false;
        }
    return true;
}

/* Whether rows [0, n_rows) of b are a's (the full cache's) but for the float order of BLAS: the
 * trimmed cache holds the window's cells at other slots than the full one, and prefill scores
 * are one sgemm over a block of cells. Most sgemm kernels give each score with the same
 * arithmetic whatever its column (bit-equal rows: OpenBLAS's SkylakeX, Sandybridge and Nehalem
 * kernels, checked), but OpenBLAS's Haswell / Zen kernel does not (first difference 2.4e-7 on
 * this model), and a score a few ulps off can flip one Q8_0 rounding before the MXFP4 experts
 * (~1e-3 on a logit; TOL as against the peer). A cell missing from the window moves the rows by
 * far more. Prints how many rows were not bit-equal and the largest difference. */
static bool rows_match(const float *a, const float *b, int64_t n_rows, const char *what) {
    int64_t n_diff = 0;
    double worst = 0.0;
    for (int64_t r = 0; r < n_rows; r++) {
        bool same = memcmp(a + r * N_VOCAB, b + r * N_VOCAB, N_VOCAB * sizeof *a) == 0;
        n_diff += !same;
        for (int64_t i = 0; i < N_VOCAB && !same; i++) {
            double d = fabs((double)a[r * N_VOCAB + i] - (double)b[r * N_VOCAB + i]);
            worst = d > worst || isnan(d) ? d : worst;
        }
    }
    print_message("  %s: %lld of %lld rows bit-equal, largest difference %.3g\n", what,
                  (long long)(n_rows - n_diff), (long long)n_rows, worst);
    return !isnan(worst) && worst <= TOL;
}

enum { SW_U = 8, SW_N0 = 40, SW_N1 = 24, SW_N = SW_N0 + SW_N1, SW_ROWS = SW_N + 1 };

/* The ids the sliding-window tests feed (deterministic). */
static void sw_ids(int32_t ids[SW_N]) {
    uint64_t seed = 7;
    for (int i = 0; i < SW_N; i++)
        ids[i] = (int32_t)(mx_test_rand(&seed) % 256);
}

/* Opens a context of CTX F32 cells, ubatch SW_U, on m (full: swa_full). */
static struct mx_llama_ctx *sw_ctx(struct mx_llama_model *m, bool full) {
    struct mx_err err = {0};
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = CTX;
    p.kv_type = MX_TYPE_F32;
    p.n_ubatch = SW_U;
    p.swa_full = full;
    struct mx_llama_ctx *c = NULL;
    if (mx_llama_ctx_new(m, &p, &c, &err) < 0)
        fail_msg("context: %s", err.msg);
    return c;
}

/* The script both caches run, into r (SW_ROWS rows): a prompt of SW_N0 in chunks of SW_U (every
 * row; snapshot into *snap after it when snap is not NULL), SW_N1 single tokens, then a context
 * shift (drop 10 tokens after the first 3, re-rotating the rest of both tables) and one more
 * token. With load (not NULL) the prompt is restored from that snapshot instead, and its rows
 * are left at 0. */
static void sw_script(struct mx_llama_ctx *c, struct rows *r, struct membuf *snap,
                      const struct membuf *load) {
    struct mx_err err = {0};
    int32_t ids[SW_N];
    sw_ids(ids);
    if (load) {
        struct membuf in = *load;
        in.off = 0;
        if (mx_llama_kv_state_load(c, in.n, mem_read, &in, &err) < 0)
            fail_msg("snapshot load: %s", err.msg);
        assert_int_equal(mx_llama_ctx_n_past(c), SW_N0);
    } else {
        if (mx_llama_decode(c, ids, SW_N0, true, collect, r, &err) < 0)
            fail_msg("prompt: %s", err.msg);
        if (snap) {
            assert_int_equal(mx_llama_kv_state_save(c, mem_write, snap, &err), 0);
            assert_int_equal(snap->n, mx_llama_kv_state_size(c));
        }
    }
    decode_each(c, ids + SW_N0, SW_N1, r, SW_N0);
    if (mx_llama_kv_discard(c, 3, 10, &err) < 0)
        fail_msg("discard: %s", err.msg);
    assert_int_equal(mx_llama_ctx_n_past(c), SW_N - 10);
    decode_each(c, ids + 5, 1, r, SW_N);
}

/* The sliding-window layers keep window + ubatch cells (llama.cpp's SWA cache): logits at every
 * position, far past the window and after a context shift, match the full cache's (rows_match);
 * the cache is smaller and the memory plan says so; a snapshot restores; removing a recent tail
 * keeps the cache, removing past the window clears it; the full cache refuses the trimmed one's
 * snapshot. */
static void test_swa_trimmed_cache(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    assert_non_null(be);
    struct mx_llama_model *m = NULL;
    if (mx_llama_model_load(model_path, be, &m, &err) < 0)
        fail_msg("load: %s", err.msg);
    struct mx_llama_ctx *ct = sw_ctx(m, false), *cf = sw_ctx(m, true);
    /* layer 0 of 2 slides: its K and V keep WIN + U cells instead of CTX (less the arena's
     * alignment of each tensor) */
    size_t bt = mx_llama_ctx_kv_bytes(ct), bf = mx_llama_ctx_kv_bytes(cf);
    size_t row = (size_t)NKV * HD * sizeof(float) * 2;
    print_message("  KV cache: %zu bytes trimmed, %zu full\n", bt, bf);
    assert_true(bf - bt + 256 >= row * (CTX - WIN - SW_U));
    /* the memory plan counts what is allocated, and what the full cache would take */
    struct mx_llama_ctx_bytes need;
    assert_int_equal(mx_llama_ctx_need(mx_llama_model_hparams(m), MX_TYPE_F32, CTX, SW_U, -1,
                                       &need, &err), 0);
    assert_int_equal(need.kv, bt);
    assert_int_equal(need.kv_host, 0);
    assert_int_equal(need.kv_full, bf);

    struct rows rt = {calloc((size_t)SW_ROWS * N_VOCAB, sizeof(float)), 0};
    struct rows rf = {calloc((size_t)SW_ROWS * N_VOCAB, sizeof(float)), 0};
    struct rows tmp = {calloc((size_t)SW_ROWS * N_VOCAB, sizeof(float)), 0};
    struct membuf snap = {0};
    sw_script(ct, &rt, &snap, NULL);
    sw_script(cf, &rf, NULL, NULL);
    print_message("  %d positions (window %d, ubatch %d) and a shift: trimmed vs full\n",
                  SW_N, WIN, SW_U);
    assert_true(rows_match(rf.v, rt.v, SW_ROWS, "trimmed vs full"));

    /* the snapshot taken after the prompt: restored, the same script gives the same rows */
    sw_script(ct, &tmp, NULL, &snap);
    assert_true(rows_same(rt.v + (size_t)SW_N0 * N_VOCAB, tmp.v + (size_t)SW_N0 * N_VOCAB,
                          SW_ROWS - SW_N0, "after the snapshot"));

    /* a recent tail (inside what the window table holds) goes; decoding it again matches */
    int32_t ids[SW_N];
    sw_ids(ids);
    mx_llama_kv_clear(ct);
    assert_int_equal(mx_llama_decode(ct, ids, SW_N0, false, NULL, NULL, &err), 0);
    decode_each(ct, ids + SW_N0, SW_N1, &tmp, SW_N0);
    assert_int_equal(mx_llama_kv_remove(ct, SW_N - 3, -1, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(ct), SW_N - 3);
    decode_each(ct, ids + SW_N - 3, 3, &tmp, 0);
    assert_true(rows_same(rt.v + (size_t)(SW_N - 3) * N_VOCAB, tmp.v, 3, "tail removed"));
    /* back past the window: the window table cannot serve position 20, the cache is cleared */
    assert_int_equal(mx_llama_kv_remove(ct, 20, -1, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(ct), 0);
    assert_int_equal(mx_llama_decode(ct, ids, SW_N0, true, collect, &tmp, &err), 0);
    assert_true(rows_same(rt.v, tmp.v, SW_N0, "prefilled again"));

    /* a snapshot of the trimmed cache does not load into the full one */
    snap.off = 0;
    assert_true(mx_llama_kv_state_load(cf, snap.n, mem_read, &snap, &err) < 0);
    print_message("  full cache refuses it: %s\n", err.msg);
    free(snap.p);
    free(rt.v);
    free(rf.v);
    free(tmp.v);
    mx_llama_ctx_free(ct);
    mx_llama_ctx_free(cf);
    mx_llama_model_free(m);
    mx_backend_free(be);
}

/* The trimmed cache on a model split between a "device" and the host (a second CPU backend
 * plays the device, as in test_split): each lane keeps its own blocks' rows and its own copy of
 * the window positions. The same script as above matches the unsplit full cache's logits
 * (rows_match) with the sliding-window block on the host (--gpu-layers 2: the full block and the output on
 * the device), on the device (everything there, the host lane without blocks) and with the
 * experts on the host; the plan of each split equals its allocation; a snapshot of one split
 * loads into another and goes on the same. */
static void test_swa_split(void **state) {
    (void)state;
    struct mx_err err = {0};
    /* the same thread count everywhere: the kernels split rows the same way */
    struct mx_backend *be = mx_backend_cpu_new(2, &err), *host = mx_backend_cpu_new(2, &err);
    assert_non_null(be);
    assert_non_null(host);
    struct mx_llama_model *m = NULL;
    if (mx_llama_model_load(model_path, be, &m, &err) < 0)
        fail_msg("load: %s", err.msg);
    struct mx_llama_ctx *cf = sw_ctx(m, true);
    struct rows rf = {calloc((size_t)SW_ROWS * N_VOCAB, sizeof(float)), 0};
    sw_script(cf, &rf, NULL, NULL);
    mx_llama_ctx_free(cf);
    mx_llama_model_free(m);

    static const struct {
        int gpu_layers, n_cpu_moe;
        const char *what;
    } splits[] = {
        {2, 0, "--gpu-layers 2 (the sliding-window block on the host)"},
        {-1, 0, "--gpu-layers all (the sliding-window block on the device)"},
        {-1, -1, "--cpu-moe"},
    };
    struct membuf snap = {0};
    for (size_t k = 0; k < MX_ARRAY_LEN(splits); k++) {
        struct mx_llama_load_opts o = {.host = host, .gpu_layers = splits[k].gpu_layers,
                                       .n_cpu_moe = splits[k].n_cpu_moe};
        if (mx_llama_model_load_opts(model_path, be, &o, &m, &err) < 0)
            fail_msg("%s: %s", splits[k].what, err.msg);
        struct mx_llama_ctx *ct = sw_ctx(m, false);
        /* the plan of this placement (i_dev as placement.h resolves -ngl) is the allocation */
        struct mx_llama_ctx_bytes need;
        int i_dev = splits[k].gpu_layers < 0 ? 0 : MX_MAX(NL + 1 - splits[k].gpu_layers, 0);
        assert_int_equal(mx_llama_ctx_need(mx_llama_model_hparams(m), MX_TYPE_F32, CTX, SW_U,
                                           i_dev, &need, &err), 0);
        print_message("  %s: KV %llu + host %llu bytes (full %llu)\n", splits[k].what,
                      (unsigned long long)need.kv, (unsigned long long)need.kv_host,
                      (unsigned long long)need.kv_full);
        assert_int_equal(need.kv + need.kv_host, mx_llama_ctx_kv_bytes(ct));
        assert_true(need.kv_full > need.kv + need.kv_host);
        struct rows rt = {calloc((size_t)SW_ROWS * N_VOCAB, sizeof(float)), 0};
        if (k == 0) {
            sw_script(ct, &rt, &snap, NULL);
        } else if (k == 1) {
            /* the first split's snapshot goes on the same here (the prompt rows are not in it) */
            sw_script(ct, &rt, NULL, &snap);
            memcpy(rt.v, rf.v, (size_t)SW_N0 * N_VOCAB * sizeof(float));
        } else {
            sw_script(ct, &rt, NULL, NULL);
        }
        if (!rows_match(rf.v, rt.v, SW_ROWS, splits[k].what))
            fail_msg("%s: the trimmed split differs from the unsplit full cache",
                     splits[k].what);
        free(rt.v);
        mx_llama_ctx_free(ct);
        mx_llama_model_free(m);
    }
    free(snap.p);
    free(rf.v);
    mx_backend_free(be);
    mx_backend_free(host);
}

/* The engine's cache plan (app/llm.c) on the trimmed cache: keeping a prefix that still has
 * its window keeps the cache; keeping one whose window the sliding-window table dropped leaves
 * the context cleared, and the plan says so (nothing cached: all is prefilled again) instead of
 * claiming the kept tokens. */
static void test_swa_llm_cache_plan(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.device = "cpu";
    s.threads = 2;
    s.n_ctx = CTX;
    s.kv_type = MX_TYPE_F32;
    s.ubatch = SW_U;
    s.no_mem_check = true;
    struct mx_llm *L = NULL;
    if (mx_llm_open(&L, model_path, &s, &err) < 0)
        fail_msg("open: %s", err.msg);
    int32_t ids[SW_N];
    sw_ids(ids);
    size_t n = 0;
    assert_int_equal(mx_llm_feed(L, ids, SW_N0, &err), 0);
    /* the last 3 go (their window is still held): 37 stay cached */
    assert_int_equal(mx_llm_cache_plan(L, ids, 0, 0, SW_N0 - 3, &err), 0);
    mx_llm_cached(L, &n);
    assert_int_equal(n, SW_N0 - 3);
    assert_int_equal(mx_llama_ctx_n_past(mx_llm_ctx(L)), SW_N0 - 3);
    /* back to 20 tokens: the window before position 20 was dropped, nothing stays */
    assert_int_equal(mx_llm_cache_plan(L, ids, 0, 0, 20, &err), 0);
    mx_llm_cached(L, &n);
    assert_int_equal(n, 0);
    assert_int_equal(mx_llama_ctx_n_past(mx_llm_ctx(L)), 0);
    assert_int_equal(mx_llm_feed(L, ids, SW_N0, &err), 0);
    mx_llm_cached(L, &n);
    assert_int_equal(n, SW_N0);
    mx_llm_close(L);
}

static int setup(void **state) {
    (void)state;
    snprintf(model_buf, sizeof model_buf, "/tmp/mx-test-gptoss-%d.gguf", (int)getpid());
    model_path = model_buf;
    return write_model(model_path) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    unlink(model_path);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-model"))
        return write_model(argv[2]) == 0 ? 0 : 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparams),
        cmocka_unit_test(test_harmony_eog),
        cmocka_unit_test(test_logits_vs_golden),
        cmocka_unit_test(test_logits_vs_peer_now),
        cmocka_unit_test(test_swa_trimmed_cache),
        cmocka_unit_test(test_swa_split),
        cmocka_unit_test(test_swa_llm_cache_plan),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
