/* test_split.c - a model split between a "device" and the host (--gpu-layers, --cpu-moe,
 * --n-cpu-moe; core/llm/placement.h) computes exactly what the whole model computes on one
 * backend. The device here is a second CPU backend: the split's plumbing (weights copied into
 * the device's buffers, a scratch arena and KV cache per side, activations carried across with
 * get/set at every boundary, experts run on the other side mid-block) is the same code a GPU
 * runs, and with the same kernels on both sides the logits must be equal to the bit. Checked:
 * every row of a prompt fed in several chunks, greedy decode steps, a context shift (KV remove
 * and re-rotation on both sides), and a KV snapshot saved from a split and loaded into another
 * split; for a dense model and Mixtral-style MoE models (F32, Q4_0 repacked, Q4_K), at
 * gpu_layers 0, 1, half, n_layer, all and n_cpu_moe 0, 1, all. Also: a LoRA adapter is refused
 * on a split model, the load's byte progress covers the copies to the device, and the
 * placement rule against llama.cpp's (-ngl counts the output layer).
 * Skips (77) without ../shared.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/llm/llama.h"
#include "core/llm/llama_impl.h" /* white box: where the parts went */
#include "core/llm/lora.h"
#include "core/llm/placement.h"
#include "core/format/gguf.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

static const char *shared;

enum { N_PROMPT = 37, N_GEN = 6, UBATCH = 16 };

/* Everything one run produced: prompt logits (every row), then the logits after each greedy
 * step, then after a context shift and one more token. */
struct run_out {
    float *v;
    int64_t n_vocab;
    int64_t n_rows;
};

static int keep_row(void *ud, int64_t i, const float *logits) {
    struct run_out *r = ud;
    memcpy(r->v + i * r->n_vocab, logits, (size_t)r->n_vocab * sizeof(float));
    return 0;
}

/* KV snapshot in memory */
struct membuf {
    char *p;
    size_t n, cap, off;
};

static int mem_write(void *ud, const void *data, size_t n, struct mx_err *err) {
    (void)err;
    struct membuf *m = ud;
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
        assert_non_null(m->p);
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
    return 0;
}

static int mem_read(void *ud, void *data, size_t n, struct mx_err *err) {
    (void)err;
    struct membuf *m = ud;
    assert_true(m->off + n <= m->n);
    memcpy(data, m->p + m->off, n);
    m->off += n;
    return 0;
}

static int32_t argmax(const float *l, int64_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return b;
}

static void copy_last(struct run_out *r, const struct mx_llama_ctx *c) {
    memcpy(r->v + r->n_rows * r->n_vocab, mx_llama_logits(c), (size_t)r->n_vocab * 4);
    r->n_rows++;
}

/* Loads path on dev (with host: split as gpu_layers / n_cpu_moe say), runs the fixed script and
 * returns its logits; *snap (when not NULL) receives a KV snapshot taken after the prompt. */
static struct run_out run(const char *path, struct mx_backend *dev, struct mx_backend *host,
                          int gpu_layers, int n_cpu_moe, struct membuf *snap,
                          const struct membuf *load) {
    struct mx_err err = {0};
    struct mx_llama_model *m = NULL;
    struct mx_llama_ctx *c = NULL;
    struct mx_llama_load_opts o = {.host = host, .gpu_layers = gpu_layers,
                                   .n_cpu_moe = n_cpu_moe};
    if (mx_llama_model_load_opts(path, dev, &o, &m, &err) < 0)
        fail_msg("%s (ngl %d, cpu-moe %d): %s", path, gpu_layers, n_cpu_moe, err.msg);
    if (host) { /* the split took place as asked: otherwise equal logits prove nothing */
        struct mx_llama_place pl;
        int nl = mx_llama_model_hparams(m)->n_layer;
        mx_llama_place_init(&pl, nl, gpu_layers, n_cpu_moe);
        for (int il = 0; il < nl; il++) {
            assert_ptr_equal(m->layers[il].be, mx_llama_place_layer_dev(&pl, il) ? dev : host);
            if (mx_llama_model_hparams(m)->n_expert > 0)
                assert_ptr_equal(m->layers[il].be_exps,
                                 mx_llama_place_exps_dev(&pl, il) ? dev : host);
        }
        assert_ptr_equal(m->be_out, pl.out_dev ? dev : host);
        assert_ptr_equal(m->be_embd, host);
    }
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = 64;
    p.n_ubatch = UBATCH;
    if (mx_llama_ctx_new(m, &p, &c, &err) < 0)
        fail_msg("context: %s", err.msg);
    const struct mx_llama_hparams *hp = mx_llama_model_hparams(m);
    struct run_out r = {calloc((size_t)(N_PROMPT + N_GEN + 2) * (size_t)hp->n_vocab, 4),
                        hp->n_vocab, 0};
    assert_non_null(r.v);
    int32_t ids[N_PROMPT];
    uint64_t s = 0x5eed;
    for (int i = 0; i < N_PROMPT; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 1 + (int32_t)((s >> 33) % (uint64_t)(hp->n_vocab - 1));
    }
    if (load) {
        struct membuf in = *load;
        in.off = 0;
        assert_int_equal(mx_llama_kv_state_load(c, in.n, mem_read, &in, &err), 0);
    } else {
        assert_int_equal(mx_llama_decode(c, ids, N_PROMPT, true, keep_row, &r, &err), 0);
        if (snap)
            assert_int_equal(mx_llama_kv_state_save(c, mem_write, snap, &err), 0);
    }
    /* the logits are not in a snapshot: every run feeds the prompt's last token again */
    assert_int_equal(mx_llama_kv_remove(c, N_PROMPT - 1, -1, &err), 0);
    assert_int_equal(mx_llama_decode(c, ids + N_PROMPT - 1, 1, false, NULL, NULL, &err), 0);
    r.n_rows = N_PROMPT - 1;
    copy_last(&r, c);
    for (int k = 0; k < N_GEN; k++) {
        int32_t t = argmax(r.v + (r.n_rows - 1) * r.n_vocab, r.n_vocab);
        if (mx_llama_decode(c, &t, 1, false, NULL, NULL, &err) < 0)
            fail_msg("decode: %s", err.msg);
        copy_last(&r, c);
    }
    /* context shift: drop 10 tokens after the first 3, re-rotating the rest, then one more */
    assert_int_equal(mx_llama_kv_discard(c, 3, 10, &err), 0);
    int32_t t = ids[5];
    assert_int_equal(mx_llama_decode(c, &t, 1, false, NULL, NULL, &err), 0);
    copy_last(&r, c);
    mx_llama_ctx_free(c);
    mx_llama_model_free(m);
    return r;
}

static int n_layer_of(const char *path, struct mx_backend *be) {
    struct mx_err err = {0};
    struct mx_llama_model *m = NULL;
    if (mx_llama_model_load(path, be, &m, &err) < 0)
        fail_msg("%s: %s", path, err.msg);
    int n = mx_llama_model_hparams(m)->n_layer;
    mx_llama_model_free(m);
    return n;
}

static void same(const struct run_out *a, const struct run_out *b, const char *what) {
    assert_int_equal(a->n_rows, b->n_rows);
    for (int64_t i = 0; i < a->n_rows * a->n_vocab; i++)
        if (memcmp(&a->v[i], &b->v[i], 4) != 0)
            fail_msg("%s: row %lld logit %lld: %.9g (whole model) != %.9g (split)", what,
                     (long long)(i / a->n_vocab), (long long)(i % a->n_vocab), a->v[i],
                     b->v[i]);
}

static void check_model(const char *file, bool moe) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", shared, file);
    struct mx_err err = {0};
    /* the same thread count on both sides: the kernels split rows the same way */
    struct mx_backend *dev = mx_backend_cpu_new(2, &err), *host = mx_backend_cpu_new(2, &err);
    assert_non_null(dev);
    assert_non_null(host);
    int nl = n_layer_of(path, dev);
    struct run_out whole = run(path, dev, NULL, -1, 0, NULL, NULL);
    const int ngls[] = {-1, nl + 1, nl, nl / 2 + 1, 1, 0};
    for (size_t i = 0; i < sizeof ngls / sizeof ngls[0]; i++) {
        char what[160];
        snprintf(what, sizeof what, "%s --gpu-layers %d", file, ngls[i]);
        struct run_out r = run(path, dev, host, ngls[i], 0, NULL, NULL);
        same(&whole, &r, what);
        free(r.v);
    }
    if (moe) {
        const int ncm[] = {-1, 1, nl - 1};
        for (size_t i = 0; i < sizeof ncm / sizeof ncm[0]; i++) {
            char what[160];
            snprintf(what, sizeof what, "%s --n-cpu-moe %d", file, ncm[i]);
            struct run_out r = run(path, dev, host, -1, ncm[i], NULL, NULL);
            same(&whole, &r, what);
            free(r.v);
        }
        /* both at once: some blocks on the host, experts of the device's first block too */
        struct run_out r = run(path, dev, host, nl, 2, NULL, NULL);
        same(&whole, &r, "--gpu-layers n_layer --n-cpu-moe 2");
        free(r.v);
    }
    /* a snapshot of one split loads into another split and goes on the same */
    struct membuf snap = {0};
    struct run_out a = run(path, dev, host, nl / 2 + 1, moe ? -1 : 0, &snap, NULL);
    struct run_out b = run(path, dev, host, 1, 0, NULL, &snap);
    /* b computed no prompt rows before the last: compare from there on */
    memset(a.v, 0, (size_t)(N_PROMPT - 1) * (size_t)a.n_vocab * 4);
    same(&a, &b, "KV snapshot from one split into another");
    free(a.v);
    free(b.v);
    free(snap.p);
    free(whole.v);
    mx_backend_free(dev);
    mx_backend_free(host);
}

static void test_dense(void **state) {
    (void)state;
    check_model("stories260K.gguf", false);
}

static void test_moe_f32(void **state) {
    (void)state;
    check_model("tiny-mixtral-f32.gguf", true);
}

static void test_moe_q4_0(void **state) {
    (void)state;
    check_model("tiny-mixtral-q4_0.gguf", true);
}

static void test_moe_q4_k(void **state) {
    (void)state;
    check_model("tiny-mixtral-d256-q4_k.gguf", true);
}

/* The rule, against llama.cpp's: -ngl N puts blocks [n_layer + 1 - N, n_layer) and, from
 * N = 1 on, the output layer on the GPU; --n-cpu-moe N keeps the first N blocks' experts. */
static void test_rule(void **state) {
    (void)state;
    struct mx_llama_place p;
    mx_llama_place_init(&p, 32, -1, 0);
    assert_int_equal(p.i_dev, 0);
    assert_true(p.out_dev);
    mx_llama_place_init(&p, 32, 33, 0);
    assert_int_equal(p.i_dev, 0);
    mx_llama_place_init(&p, 32, 32, 0);
    assert_int_equal(p.i_dev, 1);
    assert_true(p.out_dev);
    mx_llama_place_init(&p, 32, 1, 0);
    assert_int_equal(p.i_dev, 32);
    assert_true(p.out_dev);
    mx_llama_place_init(&p, 32, 0, 0);
    assert_int_equal(p.i_dev, 32);
    assert_false(p.out_dev);
    mx_llama_place_init(&p, 32, 1000, 3);
    assert_int_equal(p.i_dev, 0);
    assert_false(mx_llama_place_exps_dev(&p, 2));
    assert_true(mx_llama_place_exps_dev(&p, 3));
    assert_true(mx_llama_place_layer_dev(&p, 2));
    mx_llama_place_init(&p, 32, -1, -1);
    assert_false(mx_llama_place_exps_dev(&p, 31));
    mx_llama_place_init(&p, 32, 10, 0);
    assert_false(mx_llama_place_layer_dev(&p, 22));
    assert_true(mx_llama_place_layer_dev(&p, 23));
    assert_false(mx_llama_place_exps_dev(&p, 22));
}

/* The load's byte progress (the CLI/TUI bar) covers the copies to the device: reports climb to
 * their total, which holds at least the device's share of the file. */
struct prog {
    uint64_t last, total;
    int calls;
    bool backwards;
};

static void on_progress(void *ud, uint64_t done, uint64_t total) {
    struct prog *p = ud;
    p->backwards |= done < p->last || (p->calls > 0 && total != p->total);
    p->last = done;
    p->total = total;
    p->calls++;
}

static void test_progress(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-mixtral-q4_0.gguf", shared);
    struct mx_err err = {0};
    struct mx_backend *dev = mx_backend_cpu_new(1, &err), *host = mx_backend_cpu_new(1, &err);
    struct prog pr = {0};
    struct mx_llama_model *m = NULL;
    struct mx_llama_load_opts o = {.host = host, .gpu_layers = 2, .n_cpu_moe = 0,
                                   .progress = on_progress, .progress_ud = &pr};
    assert_int_equal(mx_llama_model_load_opts(path, dev, &o, &m, &err), 0);
    struct mx_gguf *g = NULL;
    assert_int_equal(mx_gguf_open(path, &g, &err), 0);
    struct mx_llama_place pl;
    uint64_t on_dev, on_host;
    mx_llama_place_init(&pl, mx_llama_model_hparams(m)->n_layer, 2, 0);
    mx_llama_place_bytes(g, &pl, &on_dev, &on_host);
    mx_gguf_close(g);
    assert_true(pr.calls > 2);
    assert_false(pr.backwards);
    assert_true(pr.last == pr.total);
    assert_true(on_dev > 0 && pr.total >= on_dev);
    mx_llama_model_free(m);
    mx_backend_free(dev);
    mx_backend_free(host);
}

/* LoRA on a split model: refused with a message, not wrong numbers. */
static void test_lora_refused(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-mixtral-f32.gguf", shared);
    struct mx_err err = {0};
    struct mx_backend *dev = mx_backend_cpu_new(1, &err), *host = mx_backend_cpu_new(1, &err);
    struct mx_llama_model *m = NULL;
    struct mx_llama_load_opts o = {.host = host, .gpu_layers = 1, .n_cpu_moe = 0};
    assert_int_equal(mx_llama_model_load_opts(path, dev, &o, &m, &err), 0);
    assert_int_equal(mx_llama_lora_add(m, "/nonexistent.gguf", 1.0f, &err), MX_EUNSUP);
    assert_non_null(strstr(err.msg, "LoRA adapters need the whole model on one device"));
    mx_llama_model_free(m);
    mx_backend_free(dev);
    mx_backend_free(host);
}

int main(void) {
    shared = mx_test_require_shared("test_split");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),         cmocka_unit_test(test_dense),
        cmocka_unit_test(test_moe_f32),      cmocka_unit_test(test_moe_q4_0),
        cmocka_unit_test(test_moe_q4_k),     cmocka_unit_test(test_lora_refused),
        cmocka_unit_test(test_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
