/* test_memplan.c - the memory plan of a model load (app/memplan.h) against what mx_llm_open then
 * allocates, on stories260K: the planned KV cache is the context's to the byte, the weights are
 * the file's data section, a limit below the plan makes mx_llm_open refuse with MX_ENOMEM and the
 * numbers (nothing left behind: the sanitizer pass checks for leaks), n_ctx 0 becomes the
 * largest context that fits, and no_mem_check opens it anyway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mx_test.h"
#include "app/llm.h"
#include "app/memplan.h"
#include "core/base/quant.h"
#include "core/format/gguf.h"
#include "core/llm/llama.h"

static char g_model[4096]; /* stories260K.gguf in ../shared */

/* The plan's KV bytes equal the opened context's; the weights the file's data section. */
static void test_plan_matches_ctx(void **state) {
    (void)state;
    unsetenv("MIXEL_MEM_AVAILABLE");
    struct mx_mem_plan plan;
    struct mx_err err = {0};
    assert_int_equal(mx_mem_plan_make(g_model, 256, MX_TYPE_F16, 0, &plan, &err), 0);
    struct mx_gguf *g = NULL;
    assert_int_equal(mx_gguf_open(g_model, &g, &err), 0);
    assert_int_equal(plan.weights, mx_gguf_file_size(g) - mx_gguf_data_offset(g));
    mx_gguf_close(g);
    assert_int_equal(plan.n_ctx, 256);
    assert_false(plan.capped);
    assert_int_equal(plan.total, plan.weights + plan.kv + plan.buffers);
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.device = "cpu";
    s.n_ctx = 256;
    struct mx_llm *L = NULL;
    assert_int_equal(mx_llm_open(&L, g_model, &s, &err), 0);
    assert_int_equal(plan.kv, mx_llama_ctx_kv_bytes(mx_llm_ctx(L)));
    mx_llm_close(L);
}

/* Below the plan: refused with the numbers and a context that fits; nothing returned. */
static void test_refused(void **state) {
    (void)state;
    struct mx_mem_plan plan;
    struct mx_err err = {0};
    unsetenv("MIXEL_MEM_AVAILABLE");
    assert_int_equal(mx_mem_plan_make(g_model, 512, MX_TYPE_F32, 0, &plan, &err), 0);
    char lim[32];
    snprintf(lim, sizeof lim, "%llu", (unsigned long long)(plan.total - 1));
    setenv("MIXEL_MEM_AVAILABLE", lim, 1);
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.device = "cpu";
    s.n_ctx = 512;
    s.kv_type = MX_TYPE_F32;
    struct mx_llm *L = (struct mx_llm *)&s; /* must come back NULL */
    assert_int_equal(mx_llm_open(&L, g_model, &s, &err), MX_ENOMEM);
    assert_null(L);
    assert_non_null(strstr(err.msg, "stories260K.gguf: does not fit in memory: model "));
    assert_non_null(strstr(err.msg, "(f32, 512 tokens)"));
    assert_non_null(strstr(err.msg, "available; try -c "));
    assert_non_null(strstr(err.msg, "--kv-type q8_0"));
    /* the suggested -c is the largest that fits (in steps of 256 from 256 on) */
    int sug = atoi(strstr(err.msg, "try -c ") + 7);
    assert_true(sug > 16 && sug < 512);
    struct mx_mem_plan f;
    assert_int_equal(mx_mem_plan_make(g_model, sug, MX_TYPE_F32, 0, &f, &err), 0);
    assert_true(f.total <= f.avail);
    assert_int_equal(mx_mem_plan_make(g_model, sug < 256 ? sug + 1 : sug + 256, MX_TYPE_F32, 0, &f, &err), 0);
    assert_true(f.total > f.avail);
    /* the user who knows better */
    mx_err_clear(&err);
    s.no_mem_check = true;
    assert_int_equal(mx_llm_open(&L, g_model, &s, &err), 0);
    assert_int_equal(mx_llm_n_ctx(L), 512);
    mx_llm_close(L);
    unsetenv("MIXEL_MEM_AVAILABLE");
}

/* n_ctx 0 under a limit: the largest context that fits, a multiple of 256 or below 256. */
static void test_chosen_ctx(void **state) {
    (void)state;
    struct mx_mem_plan full, plan;
    struct mx_err err = {0};
    unsetenv("MIXEL_MEM_AVAILABLE");
    assert_int_equal(mx_mem_plan_make(g_model, 0, MX_TYPE_F16, 64, &full, &err), 0);
    assert_int_equal(full.n_ctx, full.n_ctx_train);
    assert_false(full.capped);
    char lim[32];
    snprintf(lim, sizeof lim, "%llu", (unsigned long long)(full.total - full.kv / 4));
    setenv("MIXEL_MEM_AVAILABLE", lim, 1);
    assert_int_equal(mx_mem_plan_make(g_model, 0, MX_TYPE_F16, 64, &plan, &err), 0);
    assert_true(plan.capped);
    assert_true(plan.n_ctx >= 16 && plan.n_ctx < full.n_ctx);
    assert_true(plan.total <= plan.avail);
    assert_true(plan.n_ctx < 256 || plan.n_ctx % 256 == 0);
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.device = "cpu";
    s.ubatch = 64;
    struct mx_llm *L = NULL;
    assert_int_equal(mx_llm_open(&L, g_model, &s, &err), 0);
    assert_int_equal(mx_llm_n_ctx(L), plan.n_ctx);
    mx_llm_close(L);
    unsetenv("MIXEL_MEM_AVAILABLE");
}

int main(void) {
    const char *shared = mx_test_require_shared("test_memplan");
    snprintf(g_model, sizeof g_model, "%s/models/stories260K.gguf", shared);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_matches_ctx),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_chosen_ctx),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
