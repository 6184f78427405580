/* cmd_bench.c - `mixel bench`: how fast the LLM engine runs here, next to what the memory allows.
 *
 * Reports prompt processing tokens/s (p tokens in one decode, through the batched path), generation
 * tokens/s (n tokens one at a time from a near-empty cache), and with --depth D both again after D
 * tokens of context (the p tokens at positions D..D+p, as llama-bench's -d: what a long chat's next
 * turn costs), the weights read per generated token (attention, norms, output, and only the
 * expert_used_count selected experts: decode is memory-bound, so this over the time is the
 * effective bandwidth), the machine's measured read bandwidth (every thread summing its slice of a
 * large buffer, best of several passes, in a child process so that buffer stays out of the
 * figures), and the peak resident memory of the model runs. A table, or one JSON object with --json
 * so runs can be compared by scripts.
 *
 * Each figure is the median of -r repetitions after one warm-up (which also faults the mapped
 * weights in, so the first repetition does not measure the disk).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/llm/llama.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "kernels/devices.h"
#include "kernels/devinfo.h"
#include "app/llm.h"
#include "cli/bench_image.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel bench [-m MODEL] [-p N] [-n N] [--depth D] [-r N] [--json] [options]\n"
            "Prompt and generation tokens/s, weights read per token, effective GB/s against the\n"
            "machine's measured read bandwidth, peak RSS. Without -m: the bandwidth only.\n"
            "  -p, --n-prompt N   prompt tokens (default 512; 0: skip)\n"
            "  -n, --n-gen N      generated tokens (default 128; 0: skip)\n"
            "  --depth D          also prefill -p and generate -n tokens after D tokens of\n"
            "                     context (e.g. 16384)\n"
            "  -r, --reps N       repetitions, median reported (default 3)\n"
            "  --mem-mib N        size of the bandwidth sweep buffer (default 1024)\n"
            "  --json             one JSON object on stdout\n"
            "  --grammar FILE     also generate -n tokens (temperature 1) under this GBNF\n"
            "                     grammar: the grammar's cost per token and its share of a\n"
            "                     decode step\n"
            "  --json-schema FILE the same under the grammar of this JSON Schema\n"
            "  -d, --sd-model CKPT  Stable Diffusion instead: text encoder s, s/step (cfg 7),\n"
            "                     VAE decode s, peak RSS (-r: runs, default 1; with more, the\n"
            "                     first is a warm-up)\n"
            "  -W N, -H N         image size for -d (default 512x512)\n"
            "  --steps N          sampling steps for -d (default 2)\n");
    mx_cli_common_help(f, MX_CLI_BENCH);
}

/* "812.3 K", "4.6 M", "46.70 B": parameter counts of tiny test models and of Mixtral alike. */
static void fmt_count(uint64_t n, char *buf, size_t size) {
    if (n >= 1000000000ull)
        snprintf(buf, size, "%.2f B", n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, size, "%.2f M", n / 1e6);
    else if (n >= 1000ull)
        snprintf(buf, size, "%.1f K", n / 1e3);
    else
        snprintf(buf, size, "%llu", (unsigned long long)n);
}

/* ---- memory bandwidth ------------------------------------------------------------------------ */

struct sweep_job {
    const uint64_t *p; /* slice start */
    size_t n;          /* 8-byte words */
    uint64_t sum;      /* result, so the reads are not optimised away */
};

static void *sweep_slice(void *arg) {
    struct sweep_job *j = arg;
    const uint64_t *p = j->p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    size_t i = 0;
    for (; i + 8 <= j->n; i += 8) { /* independent chains: the loads, not the adds, limit it */
        a0 += p[i];
        a1 += p[i + 1];
        a2 += p[i + 2];
        a3 += p[i + 3];
        a4 += p[i + 4];
        a5 += p[i + 5];
        a6 += p[i + 6];
        a7 += p[i + 7];
    }
    for (; i < j->n; i++)
        a0 += p[i];
    j->sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    return NULL;
}

/* Best read bandwidth in bytes/s over `passes` sweeps of a `bytes` buffer by n_threads threads;
 * 0 when the buffer cannot be had. */
static double measure_bandwidth(size_t bytes, int n_threads, int passes) {
    size_t words = bytes / 8;
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, words * 8) != 0)
        return 0;
    for (size_t i = 0; i < words; i++) /* fault every page in and give it non-zero data */
        buf[i] = i * 0x9e3779b97f4a7c15ull;
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > 256)
        n_threads = 256;
    struct sweep_job jobs[256];
    pthread_t th[256];
    double best = 0;
    uint64_t sink = 0;
    for (int pass = 0; pass < passes; pass++) {
        size_t per = words / (size_t)n_threads;
        double t0 = mx_time_s();
        int started = 0;
        for (int t = 0; t < n_threads; t++) {
            jobs[t].p = buf + (size_t)t * per;
            jobs[t].n = t == n_threads - 1 ? words - (size_t)t * per : per;
            if (t > 0 && pthread_create(&th[t], NULL, sweep_slice, &jobs[t]) != 0)
                jobs[t].n = 0; /* could not start: this slice is skipped */
            else if (t > 0)
                started |= 1;
        }
        sweep_slice(&jobs[0]);
        size_t read = jobs[0].n;
        for (int t = 1; t < n_threads; t++)
            if (jobs[t].n) {
                pthread_join(th[t], NULL);
                read += jobs[t].n;
            }
        (void)started;
        double dt = mx_time_s() - t0;
        for (int t = 0; t < n_threads; t++)
            sink += jobs[t].sum;
        double bw = (double)read * 8 / dt;
        if (bw > best)
            best = bw;
    }
    free(buf);
    return sink == 1 ? best + 1e-300 : best; /* keeps sink alive */
}

/* The sweep in a child process, so its buffer does not count in this process's peak RSS. Returns
 * bytes/s, 0 on failure. */
static double measure_bandwidth_apart(size_t bytes, int n_threads, int passes) {
    int fd[2];
    if (pipe(fd) != 0)
        return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return measure_bandwidth(bytes, n_threads, passes);
    }
    if (pid == 0) {
        close(fd[0]);
        double bw = measure_bandwidth(bytes, n_threads, passes);
        ssize_t w = write(fd[1], &bw, sizeof bw);
        _exit(w == (ssize_t)sizeof bw ? 0 : 1);
    }
    close(fd[1]);
    double bw = 0;
    ssize_t r;
    do
        r = read(fd[0], &bw, sizeof bw);
    while (r < 0 && errno == EINTR);
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return r == (ssize_t)sizeof bw ? bw : 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double mx_bench_median(double *v, int n) {
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

uint64_t mx_bench_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024; /* Linux: KiB */
}

/* Feeds ids[0..n) in one decode; returns seconds, or < 0 after printing the error. */
static double timed_decode(struct mx_llama_ctx *c, const int32_t *ids, int64_t n) {
    struct mx_err err = {0};
    double t0 = mx_time_s();
    int rc = mx_llama_decode(c, ids, n, false, NULL, NULL, &err);
    if (rc < 0) {
        mx_cli_err("bench", "%s", mx_err_msg(&err, rc));
        return -1;
    }
    return mx_time_s() - t0;
}

/* Generates n tokens one at a time (fed ids, not sampled: the speed is the same) after the
 * cache's current content; returns tokens/s or < 0. */
static double gen_speed(struct mx_llama_ctx *c, const int32_t *ids, int64_t n) {
    double t0 = mx_time_s();
    for (int64_t i = 0; i < n; i++)
        if (timed_decode(c, &ids[i], 1) < 0)
            return -1;
    return (double)n / (mx_time_s() - t0);
}

/* Drops the generated text (the grammar run only times it). */
static int sink(void *ud, const char *s, size_t n) {
    (void)ud, (void)s, (void)n;
    return 0;
}

/* --grammar: n tokens sampled at temperature 1 under the grammar after a BOS, the EOS ignored
 * (a finished sentence ends the run early). Returns 0 with *st, or 1 after printing why. */
static int bench_grammar(struct mx_llm *L, const struct mx_cli_opts *o, const char *file,
                         const int32_t *ids, long long n, struct mx_gen_stats *st) {
    struct mx_gen_settings s = o->s;
    s.grammar = file;
    s.n_predict = (int)n;
    s.sampling.temp = 1.0f;
    s.ignore_eos = false;
    struct mx_gen_io io = {.text = sink};
    struct mx_err err = {0};
    mx_llm_clear(L);
    int rc = mx_llm_prefill(L, ids, 1, &io, st, &err);
    if (rc == 0)
        rc = mx_llm_generate(L, &s, ids, 1, &io, st, &err);
    if (rc < 0) {
        mx_cli_err("bench", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    return 0;
}

/* ---- the command ----------------------------------------------------------------------------- */

int mx_cmd_bench(int argc, char **argv) {
    struct mx_cli_opts o;
    mx_cli_opts_init(&o);
    o.quiet = true;
    long long n_prompt = 512, n_gen = 128, depth = 0, reps = -1, mem_mib = 1024;
    long long sd_w = 512, sd_h = 512, sd_steps = 2;
    const char *sd_model = NULL, *grammar = NULL, *schema = NULL;
    bool json = false;
    const struct mx_cli_extra extra[] = {
        {"-p", "--n-prompt", MX_X_INT, &n_prompt, 0, 1 << 24},
        {"-n", "--n-gen", MX_X_INT, &n_gen, 0, 1 << 24},
        {NULL, "--depth", MX_X_INT, &depth, 0, 1 << 24},
        {"-r", "--reps", MX_X_INT, &reps, 1, 1 << 24},
        {NULL, "--mem-mib", MX_X_INT, &mem_mib, 0, 65536},
        {NULL, "--json", MX_X_FLAG, &json, 0, 0},
        {NULL, "--grammar", MX_X_STR, &grammar, 0, 0},
        {NULL, "--json-schema", MX_X_STR, &schema, 0, 0},
        {"-d", "--sd-model", MX_X_STR, &sd_model, 0, 0},
        {"-W", "--width", MX_X_INT, &sd_w, 64, 4096},
        {"-H", "--height", MX_X_INT, &sd_h, 64, 4096},
        {NULL, "--steps", MX_X_INT, &sd_steps, 1, 64},
    };
    int pr = mx_cli_parse("bench", MX_CLI_BENCH, argc, argv, &o, extra,
                          sizeof extra / sizeof extra[0], usage);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    if (schema && grammar) {
        mx_cli_err("bench", "--grammar and --json-schema exclude each other");
        return 2;
    }
    if (schema) { /* the grammar run takes the converted text (it wins over the file name) */
        if (!(o.s.grammar_text = mx_cli_schema_gbnf("bench", schema)))
            return 1;
        o.s.grammar_name = grammar = schema;
    }
    if (sd_model) {
        mx_cli_log_init(&o);
        return mx_bench_image(&o, sd_model, (int)sd_w, (int)sd_h, (int)sd_steps,
                              reps < 1 ? 1 : (int)reps, json);
    }
    if (reps < 1)
        reps = 3;
    if (reps > 99)
        reps = 99;

    int status = 1;
    struct mx_llm *L = NULL;
    struct mx_backend *be = NULL;
    struct mx_llama_model *m = NULL;
    struct mx_llama_ctx *c = NULL;
    int32_t *ids = NULL;
    double load_s = 0, pp = 0, tg = 0, tg_depth = 0, pp_depth = 0;
    struct mx_gen_stats gst = {0}; /* the --grammar run */
    int n_threads = 0;
    const char *kernels = "";
    struct mx_llama_size sz = {0};
    const struct mx_llama_hparams *hp = NULL;
    uint64_t kv_row = 0;
    if (o.model) {
        if (o.s.n_ctx == 0) /* room for the runs, not the model's whole context */
            o.s.n_ctx = (int)MX_MAX(MX_MAX(n_prompt, depth + MX_MAX(n_gen, n_prompt)) + 16, 256);
        if (mx_cli_resolve_model("bench", &o))
            goto done;
        mx_cli_log_init(&o);
        struct mx_err oerr = {0};
        int rc = mx_llm_open(&L, o.model, &o.s, &oerr);
        if (rc < 0) {
            mx_cli_err("bench", "%s", mx_err_msg(&oerr, rc));
            goto done;
        }
        be = mx_llm_backend(L);
        m = mx_llm_model(L);
        c = mx_llm_ctx(L);
        load_s = mx_llm_load_s(L);
        n_threads = mx_backend_cpu_n_threads(be);
        kernels = mx_backend_cpu_kernels(be);
        hp = mx_llama_model_hparams(m);
        mx_llama_model_size(m, &sz);
        /* KV bytes read per token and per cached token (K and V, every layer) */
        kv_row = mx_llama_ctx_kv_bytes(c) / (uint64_t)mx_llama_ctx_n_ctx(c);
        int64_t n_ids = MX_MAX(MX_MAX(n_prompt, n_gen), depth + n_prompt) + 1;
        ids = malloc((size_t)n_ids * sizeof *ids);
        if (!ids) {
            mx_cli_err("bench", "out of memory");
            goto done;
        }
        uint64_t s = 12345;
        ids[0] = 1;
        for (int64_t i = 1; i < n_ids; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = 3 + (int32_t)((s >> 33) % (uint64_t)(hp->n_vocab > 3 ? hp->n_vocab - 3 : 1));
        }
        double v[100];
        if (n_prompt > 0) {
            for (int r = 0; r <= reps; r++) { /* r == 0: warm-up */
                mx_llama_kv_clear(c);
                double dt = timed_decode(c, ids, n_prompt);
                if (dt < 0)
                    goto done;
                if (r > 0)
                    v[r - 1] = (double)n_prompt / dt;
            }
            pp = mx_bench_median(v, (int)reps);
        }
        if (n_gen > 0) {
            for (int r = 0; r <= reps; r++) {
                mx_llama_kv_clear(c);
                if (timed_decode(c, ids, 1) < 0) /* BOS, then n tokens one by one */
                    goto done;
                double sp = gen_speed(c, ids + 1, r == 0 ? MX_MIN(n_gen, 8) : n_gen);
                if (sp < 0)
                    goto done;
                if (r > 0)
                    v[r - 1] = sp;
            }
            tg = mx_bench_median(v, (int)reps);
        }
        if (depth > 0 && (n_gen > 0 || n_prompt > 0)) {
            mx_llama_kv_clear(c); /* the context, once (it also warms the weights) */
            if (timed_decode(c, ids, depth) < 0)
                goto done;
        }
        if (depth > 0 && n_prompt > 0) {
            for (int r = 0; r < reps; r++) {
                double dt = timed_decode(c, ids + depth, n_prompt);
                if (dt < 0)
                    goto done;
                v[r] = (double)n_prompt / dt;
                struct mx_err err = {0}; /* back to the same depth */
                if (mx_llama_kv_remove(c, depth, -1, &err) < 0) {
                    mx_cli_err("bench", "%s", err.msg);
                    goto done;
                }
            }
            pp_depth = mx_bench_median(v, (int)reps);
        }
        if (depth > 0 && n_gen > 0) {
            for (int r = 0; r < reps; r++) {
                double sp = gen_speed(c, ids + 1, n_gen);
                if (sp < 0)
                    goto done;
                v[r] = sp;
                struct mx_err err = {0}; /* back to the same depth */
                if (mx_llama_kv_remove(c, depth, -1, &err) < 0) {
                    mx_cli_err("bench", "%s", err.msg);
                    goto done;
                }
            }
            tg_depth = mx_bench_median(v, (int)reps);
        }
        if (grammar && n_gen > 0 && (status = bench_grammar(L, &o, grammar, ids, n_gen,
                                                           &gst)) != 0)
            goto done;
        status = 1;
    }
    if (n_threads == 0)
        n_threads = o.s.threads > 0 ? o.s.threads : 2;
    uint64_t rss = mx_bench_peak_rss(); /* before the sweep (which runs in a child anyway) */
    double machine = measure_bandwidth_apart((size_t)mem_mib << 20, n_threads, 5);
    double wgbps = tg * (double)sz.n_bytes_active / 1e9;
    /* on a GPU the bound is the card's memory, not the host's */
    struct mx_cuda_info ci;
    const struct mx_cuda_device *card = NULL;
    if (L && !strcmp(mx_llm_device(L), "CUDA")) {
        mx_cuda_info_get(&ci);
        int idx = mx_device_cuda_index(o.s.device);
        if (idx < 0) /* auto (or NULL) on CUDA: the first GPU, as mx_device_open picks */
            idx = 0;
        if (idx >= 0 && idx < ci.n_devices)
            card = &ci.dev[idx];
    }
    const char *name = o.model ? strrchr(o.model, '/') : NULL;
    name = name ? name + 1 : o.model;

    if (json) {
        printf("{\"model\": \"");
        /* file names are untrusted text: controls (C0, DEL, C1) only as JSON escapes */
        for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++)
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if (*p < 0x20 || *p == 0x7f)
                printf("\\u%04x", *p);
            else if (*p == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0)
                printf("\\u%04x", *++p);
            else
                putchar(*p);
        printf("\", \"threads\": %d, \"kernels\": \"%s\", \"pp\": {\"n\": %lld, "
               "\"tokens_per_s\": %.3f}, \"tg\": {\"n\": %lld, \"tokens_per_s\": %.3f}, ",
               n_threads, kernels, n_prompt, pp, n_gen, tg);
        if (depth > 0 && n_prompt > 0)
            printf("\"pp_depth\": {\"depth\": %lld, \"n\": %lld, \"tokens_per_s\": %.3f}, ",
                   depth, n_prompt, pp_depth);
        if (depth > 0 && n_gen > 0)
            printf("\"tg_depth\": {\"depth\": %lld, \"n\": %lld, \"tokens_per_s\": %.3f, "
                   "\"kv_bytes_per_token\": %llu}, ", depth, n_gen, tg_depth,
                   (unsigned long long)(kv_row * (uint64_t)depth));
        if (grammar && gst.n_generated > 0)
            printf("\"grammar\": {\"n\": %zu, \"us_per_token\": %.3f, \"step_ms\": %.4f, "
                   "\"refused\": %zu}, ", gst.n_generated,
                   gst.grammar_s * 1e6 / (double)gst.n_generated,
                   gst.gen_s * 1e3 / (double)gst.n_generated, gst.grammar_refused);
        if (card)
            printf("\"device\": \"cuda\", \"card_gbps\": %.3f, ", card->mem_bw / 1e9);
        printf("\"weights_gbps\": %.3f, \"machine_gbps\": %.3f, \"peak_rss_bytes\": %llu, "
               "\"bytes_per_token\": %llu, \"params\": %llu, \"params_active\": %llu, "
               "\"weight_bytes\": %llu, \"n_expert\": %d, \"n_expert_used\": %d, "
               "\"kv_type\": \"%s\", \"load_s\": %.3f, \"reps\": %lld}\n",
               wgbps, machine / 1e9, (unsigned long long)rss,
               (unsigned long long)sz.n_bytes_active, (unsigned long long)sz.n_params,
               (unsigned long long)sz.n_params_active, (unsigned long long)sz.n_bytes,
               hp ? hp->n_expert : 0, hp ? hp->n_expert_used : 0,
               mx_type_name(o.s.kv_type), load_s, reps);
    } else {
        if (o.model) {
            char total[32], active[32];
            fmt_count(sz.n_params, total, sizeof total);
            fmt_count(sz.n_params_active, active, sizeof active);
            printf("model           %s\n", mx_safe(name));
            printf("params          %s total, %s active per token (%d experts, %d used); "
                   "weights %.1f MB, %.1f MB read per token\n", total, active, hp->n_expert,
                   hp->n_expert_used, sz.n_bytes / 1e6, sz.n_bytes_active / 1e6);
            printf("threads         %d (kernels %s, load %.2f s, KV cache %s, median of %lld)\n",
                   n_threads, kernels, load_s, mx_type_name(o.s.kv_type), reps);
            if (n_prompt > 0)
                printf("pp %-12lld %.2f tokens/s\n", n_prompt, pp);
            if (n_gen > 0)
                printf("tg %-12lld %.2f tokens/s\n", n_gen, tg);
            if (depth > 0 && n_prompt > 0)
                printf("pp %lld @ %-6lld %.2f tokens/s\n", n_prompt, depth, pp_depth);
            if (depth > 0 && n_gen > 0)
                printf("tg %lld @ %-6lld %.2f tokens/s (KV read per token %.1f MB)\n", n_gen,
                       depth, tg_depth, kv_row * (double)depth / 1e6);
            if (grammar && gst.n_generated > 0) {
                double per = gst.grammar_s / (double)gst.n_generated;
                double step = gst.gen_s / (double)gst.n_generated;
                printf("grammar         %.1f us per token, %.1f %% of a %.2f ms step (%zu tokens, "
                       "%zu picks refused, ended: %s)\n", per * 1e6,
                       step > 0 ? 100 * per / step : 0.0, step * 1e3, gst.n_generated,
                       gst.grammar_refused, mx_gen_end_name(gst.end));
            }
            if (n_gen > 0 && card)
                printf("effective       %.2f GB/s of weights (%.1f MB x %.2f tokens/s), %.0f %% "
                       "of the card's %.0f GB/s (%s)\n", wgbps, sz.n_bytes_active / 1e6, tg,
                       card->mem_bw > 0 ? 100 * wgbps * 1e9 / card->mem_bw : 0.0,
                       card->mem_bw / 1e9, mx_safe(card->name));
            else if (n_gen > 0)
                printf("effective       %.2f GB/s of weights (%.1f MB x %.2f tokens/s), %.0f %% "
                       "of the machine\n", wgbps, sz.n_bytes_active / 1e6, tg,
                       machine > 0 ? 100 * wgbps * 1e9 / machine : 0.0);
        }
        printf("machine         %.2f GB/s measured read bandwidth (%lld MiB, %d threads, best "
               "of 5)\n", machine / 1e9, mem_mib, n_threads);
        printf("peak RSS        %.1f MB\n", rss / 1e6);
    }
    status = 0;
done:
    free(ids);
    mx_llm_close(L);
    return status;
}
