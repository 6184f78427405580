/* test_gguf_split.c - split GGUFs (llama.cpp's gguf-split layout: NAME-0000i-of-0000N.gguf,
 * split.no / split.count / split.tensors.count, the metadata in the first shard, tensors spread
 * over all): tiny-mixtral-q4_0's tensors written over 3 shards with the project's GGUF writer
 * load as one model from the first shard, mapped and with --no-mmap, and give the same logits
 * as the unsplit file to the bit (the repack and expert paths copy out of every shard); a
 * missing shard, a shard with the wrong split.no and a first shard under another name are
 * refused with messages naming them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mx_test.h"
#include "app/llm.h"
#include "core/format/gguf.h"
#include "core/llm/llama.h"

#define NSHARD 3

static char g_model[4096];  /* the unsplit model in ../shared */
static char g_dir[256];     /* temp folder of the shards */

/* The path of shard i (1-based) of n under g_dir with stem. */
static const char *shard(const char *stem, int i, int n) {
    static char ring[4][4400];
    static int k;
    char *b = ring[k++ % 4];
    snprintf(b, 4400, "%s/%s-%05d-of-%05d.gguf", g_dir, stem, i, n);
    return b;
}

/* Writes g_model's tensors over NSHARD files as gguf-split does (metadata in the first, tensors
 * in consecutive runs); bad_no: shard 2 claims split.no 5. */
static void write_split(const char *stem, bool bad_no) {
    struct mx_gguf *g = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_gguf_open(g_model, &g, &err), 0);
    int64_t nt = mx_gguf_n_tensors(g);
    for (int s = 0; s < NSHARD; s++) {
        struct mx_gguf_writer *w = mx_gguf_writer_new();
        assert_non_null(w);
        if (s == 0)
            for (int64_t i = 0; i < mx_gguf_n_kv(g); i++)
                assert_int_equal(mx_gguf_writer_set_value(w, mx_gguf_kv_key(g, i),
                                                          mx_gguf_kv_value(g, i)), 0);
        assert_int_equal(mx_gguf_writer_set_u16(w, "split.no", (uint16_t)(bad_no && s == 1 ? 5 : s)),
                         0);
        assert_int_equal(mx_gguf_writer_set_u16(w, "split.count", NSHARD), 0);
        assert_int_equal(mx_gguf_writer_set_i32(w, "split.tensors.count", (int32_t)nt), 0);
        for (int64_t i = nt * s / NSHARD; i < nt * (s + 1) / NSHARD; i++) {
            const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
            assert_int_equal(mx_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne,
                                                       t->data), 0);
        }
        assert_int_equal(mx_gguf_writer_write(w, shard(stem, s + 1, NSHARD), 3, &err), 0);
        mx_gguf_writer_free(w);
    }
    mx_gguf_close(g);
}

/* The logits of every position of a fixed prompt, from a model opened with s. */
static float *all_logits(const char *path, bool no_mmap, int32_t *n_vocab) {
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.device = "cpu";
    s.n_ctx = 64;
    s.no_mmap = no_mmap;
    struct mx_llm *L = NULL;
    struct mx_err err = {0};
    int rc = mx_llm_open(&L, path, &s, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    *n_vocab = mx_llm_n_vocab(L);
    static const int32_t ids[] = {1, 9, 100, 200, 37, 44, 300, 12};
    size_t n = sizeof ids / sizeof ids[0];
    float *out = malloc(n * (size_t)*n_vocab * sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(mx_llm_feed(L, &ids[i], 1, &err), 0);
        memcpy(out + i * (size_t)*n_vocab, mx_llama_logits(mx_llm_ctx(L)),
               (size_t)*n_vocab * sizeof *out);
    }
    mx_llm_close(L);
    return out;
}

static void test_split_logits_equal(void **state) {
    (void)state;
    write_split("tm", false);
    int32_t nv0, nv1, nv2;
    float *a = all_logits(g_model, false, &nv0);
    float *b = all_logits(shard("tm", 1, NSHARD), false, &nv1);
    float *c = all_logits(shard("tm", 1, NSHARD), true, &nv2);
    assert_int_equal(nv0, nv1);
    assert_int_equal(nv0, nv2);
    assert_memory_equal(a, b, 8 * (size_t)nv0 * sizeof *a);
    assert_memory_equal(a, c, 8 * (size_t)nv0 * sizeof *a);
    free(a);
    free(b);
    free(c);
    /* the reader sees every tensor once, with the data of the unsplit file */
    struct mx_gguf *g0 = NULL, *g1 = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_gguf_open(g_model, &g0, &err), 0);
    assert_int_equal(mx_gguf_open(shard("tm", 1, NSHARD), &g1, &err), 0);
    assert_int_equal(mx_gguf_n_tensors(g0), mx_gguf_n_tensors(g1));
    for (int64_t i = 0; i < mx_gguf_n_tensors(g0); i++) {
        const struct mx_gguf_tensor *t0 = mx_gguf_tensor(g0, i);
        const struct mx_gguf_tensor *t1 = mx_gguf_find_tensor(g1, t0->name);
        assert_non_null(t1);
        assert_int_equal(t0->nbytes, t1->nbytes);
        assert_memory_equal(t0->data, t1->data, t0->nbytes);
    }
    mx_gguf_close(g0);
    mx_gguf_close(g1);
}

static void test_split_errors(void **state) {
    (void)state;
    struct mx_gguf *g = NULL;
    struct mx_err err = {0};
    write_split("bad", true);
    assert_int_equal(mx_gguf_open(shard("bad", 1, NSHARD), &g, &err), MX_EFORMAT);
    assert_null(g);
    assert_non_null(strstr(err.msg, "bad-00002-of-00003.gguf: shard 2 of 3 says split.no 5"));
    write_split("miss", false);
    unlink(shard("miss", 3, NSHARD));
    mx_err_clear(&err);
    assert_int_equal(mx_gguf_open(shard("miss", 1, NSHARD), &g, &err), MX_ENOENT);
    assert_non_null(strstr(err.msg, "miss-00003-of-00003.gguf: shard 3 of 3 missing"));
    /* the first shard under another name: its partners cannot be found */
    char other[4400];
    snprintf(other, sizeof other, "%s/renamed.gguf", g_dir);
    assert_int_equal(rename(shard("tm", 1, NSHARD), other), 0);
    mx_err_clear(&err);
    assert_int_equal(mx_gguf_open(other, &g, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "split.count 3, but the name does not end in "
                                    "-00001-of-00003.gguf"));
}

int main(void) {
    const char *shared = mx_test_require_shared("test_gguf_split");
    snprintf(g_model, sizeof g_model, "%s/models/tiny-mixtral-q4_0.gguf", shared);
    snprintf(g_dir, sizeof g_dir, "/tmp/mx_split_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_logits_equal),
        cmocka_unit_test(test_split_errors),
    };
    int rc = mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
