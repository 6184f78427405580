/* test_cuda_model.c - whole models on the CUDA backend against the CPU backend: the logits at
 * every position of a prompt (through the batched path: cuBLAS for the 40-token chunk) and 24
 * greedy tokens one at a time (the decode kernels), for the ../shared models in every type they
 * come in (F32, F16, Q8_0, Q4_0, Q4_K, Q6_K; llama and Mixtral). Both run in MX_ACT_F32 mode
 * (activations stay F32), with an F32 KV cache, so the two differ only in
 * summation order: logits within 1e-3 of each other relative to their largest magnitude, and
 * the greedy text equal. The same models split between the GPU and a CPU host (--gpu-layers 2,
 * --cpu-moe, --n-cpu-moe 1; core/llm/placement.h) within the same bound. Skips (77) with the
 * reason without ../shared or a CUDA device.
 *
 * Built a second time as test_cuda_model_emu (MX_TEST_CUDA_EMU) against the CPU emulator of
 * CUDA (kernels/cuda/emu/README), where a thread costs ~20 ns: there every model runs whole on
 * the "GPU", and the splits run for the llama model and one Mixtral type (Q4_0): the split
 * plumbing does not depend on the weights' type, and all seven would take minutes in make check.
 * Under ASan (MX_SANITIZE=1: make check-sanitize, which catches the kernels' out-of-bounds
 * device accesses) it runs those two models only, and the splits on the llama model only, to
 * stay within about two minutes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/llm/llama.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

static const char *shared;

struct rows {
    float *v;      /* n x n_vocab logits */
    int64_t n_vocab;
};

static int keep_row(void *ud, int64_t i, const float *logits) {
    struct rows *r = ud;
    memcpy(r->v + i * r->n_vocab, logits, (size_t)r->n_vocab * sizeof(float));
    return 0;
}

/* Prompt logits (n rows) and greedy ids (n_gen) of the model on backend be (with host: split
 * as gpu_layers / n_cpu_moe say, core/llm/placement.h). */
static void run_split(struct mx_backend *be, struct mx_backend *host, int gpu_layers,
                      int n_cpu_moe, const char *path, const int32_t *prompt, int64_t n,
                      float *logits, int32_t *gen, int n_gen) {
    struct mx_err err = {0};
    struct mx_llama_model *m = NULL;
    struct mx_llama_ctx *c = NULL;
    struct mx_llama_load_opts o = {.host = host, .gpu_layers = gpu_layers,
                                   .n_cpu_moe = n_cpu_moe};
    if (mx_llama_model_load_opts(path, be, &o, &m, &err) < 0)
        fail_msg("%s on %s: %s", path, mx_backend_name(be), err.msg);
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = 256;
    p.kv_type = MX_TYPE_F32;
    if (mx_llama_ctx_new(m, &p, &c, &err) < 0)
        fail_msg("context on %s: %s", mx_backend_name(be), err.msg);
    const struct mx_llama_hparams *hp = mx_llama_model_hparams(m);
    struct rows r = {logits, hp->n_vocab};
    assert_int_equal(mx_llama_decode(c, prompt, n, true, keep_row, &r, &err), 0);
    const float *last = logits + (n - 1) * hp->n_vocab;
    for (int k = 0; k < n_gen; k++) {
        int32_t best = 0;
        for (int32_t i = 1; i < hp->n_vocab; i++)
            if (last[i] > last[best])
                best = i;
        gen[k] = best;
        assert_int_equal(mx_llama_decode(c, &best, 1, false, NULL, NULL, &err), 0);
        last = mx_llama_logits(c);
    }
    mx_llama_ctx_free(c);
    mx_llama_model_free(m);
}

static void run(struct mx_backend *be, const char *path, const int32_t *prompt, int64_t n,
                float *logits, int32_t *gen, int n_gen) {
    run_split(be, NULL, -1, 0, path, prompt, n, logits, gen, n_gen);
}

/* max |a - b| over n values, and max |a| */
static void diff(const float *a, const float *b, int64_t n, double *md, double *mx) {
    *md = *mx = 0;
    for (int64_t i = 0; i < n; i++) {
        *mx = fmax(*mx, fabs(a[i]));
        *md = fmax(*md, fabs((double)a[i] - b[i]));
    }
}

static void test_models(void **state) {
    (void)state;
    const char *files[] = {"stories260K.gguf",          "tiny-mixtral-f32.gguf",
                           "tiny-mixtral-f16.gguf",     "tiny-mixtral-q8_0.gguf",
                           "tiny-mixtral-q4_0.gguf",    "tiny-mixtral-d256-q4_k.gguf",
                           "tiny-mixtral-d256-q6_k.gguf"};
    struct mx_err err = {0};
    struct mx_backend *cpu = mx_backend_cpu_new(0, &err), *gpu = mx_backend_cuda_new(0, &err);
    struct mx_backend *host = mx_backend_cpu_new(0, &err);
    assert_non_null(cpu);
    assert_non_null(gpu);
    assert_non_null(host);
    mx_backend_set_act_mode(cpu, MX_ACT_F32);
    mx_backend_set_act_mode(host, MX_ACT_F32);
    mx_backend_set_act_mode(gpu, MX_ACT_F32); /* the exact path (test_cuda_kernels: GGML's) */
    enum { N = 40, NG = 24 };
    int32_t prompt[N];
    for (int i = 0; i < N; i++)
        prompt[i] = i == 0 ? 1 : 3 + (i * 37) % 250;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
#ifdef MX_TEST_CUDA_EMU
        const char *san = getenv("MX_SANITIZE");
        const bool sanitize = san && strcmp(san, "1") == 0;
        if (sanitize && f != 0 && !strstr(files[f], "q4_0"))
            continue;
#endif
        char path[4096];
        snprintf(path, sizeof path, "%s/models/%s", shared, files[f]);
        const int64_t V = 32768; /* >= every vocabulary here */
        float *a = calloc((size_t)N * V, sizeof *a), *b = calloc((size_t)N * V, sizeof *b);
        int32_t ga[NG], gb[NG];
        run(cpu, path, prompt, N, a, ga, NG);
        run(gpu, path, prompt, N, b, gb, NG);
        double mx = 0, md = 0;
        diff(a, b, (int64_t)N * V, &md, &mx);
        printf("%-28s logits max |gpu - cpu| %.3g (max |cpu| %.3g), greedy %s\n", files[f], md,
               mx, memcmp(ga, gb, sizeof ga) ? "DIFFERS" : "equal");
        assert_true(md <= 1e-3 * mx);
        assert_memory_equal(ga, gb, sizeof ga);
        /* split between the GPU and a CPU host: the last block + output on the GPU; every
         * block on the GPU but the experts (--cpu-moe); the experts of block 0 (--n-cpu-moe 1) */
        const int splits[3][2] = {{2, 0}, {-1, -1}, {-1, 1}};
#ifdef MX_TEST_CUDA_EMU
        const int n_splits = f == 0 || (strstr(files[f], "q4_0") && !sanitize) ? 3 : 0;
#else
        const int n_splits = 3;
#endif
        for (int k = 0; k < n_splits; k++) {
            int32_t gs[NG];
            memset(b, 0, (size_t)N * V * sizeof *b);
            run_split(gpu, host, splits[k][0], splits[k][1], path, prompt, N, b, gs, NG);
            diff(a, b, (int64_t)N * V, &md, &mx);
            printf("%-28s split ngl %d cpu-moe %d: max |split - cpu| %.3g, greedy %s\n",
                   files[f], splits[k][0], splits[k][1], md,
                   memcmp(ga, gs, sizeof ga) ? "DIFFERS" : "equal");
            assert_true(md <= 1e-3 * mx);
            assert_memory_equal(ga, gs, sizeof ga);
        }
        free(a);
        free(b);
    }
    mx_backend_free(gpu);
    mx_backend_free(cpu);
    mx_backend_free(host);
}

int main(void) {
    shared = mx_test_require_shared("test_cuda_model");
    struct mx_err err = {0};
    struct mx_backend *probe = mx_backend_cuda_new(0, &err);
    if (!probe) {
        printf("SKIP: no CUDA device to run the models on: %s\n", err.msg);
        return 77;
    }
    mx_backend_free(probe);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_models)};
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
