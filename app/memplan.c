/* memplan.c - the memory plan of a model load (see memplan.h). */
#include "app/memplan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/base/quant.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/llm/placement.h"
#include "kernels/devices.h"
#include "kernels/devinfo.h"

uint64_t mx_app_mem_available(void) {
    const char *fake = getenv("MIXEL_MEM_AVAILABLE");
    return fake && fake[0] ? strtoull(fake, NULL, 10) : mx_mem_available();
}

const char *mx_mem_fmt(uint64_t bytes, char *buf, size_t size) {
    if (bytes >= (1ull << 30))
        snprintf(buf, size, "%.1f GiB", bytes / 1073741824.0);
    else if (bytes >= (1ull << 20))
        snprintf(buf, size, "%.1f MiB", bytes / 1048576.0);
    else
        snprintf(buf, size, "%llu KiB", (unsigned long long)((bytes + 1023) / 1024));
    return buf;
}

/* Fills plan's kv, kv_full, buffers and total for n_ctx cells. */
static int plan_ctx(const struct mx_llama_hparams *hp, int kv_type, int ubatch, int64_t n_ctx,
                    struct mx_mem_plan *plan, struct mx_err *err) {
    struct mx_llama_ctx_bytes need;
    /* a split: the device holds its blocks' K/V (sliding-window blocks are smaller), the host
     * the others' */
    int rc = mx_llama_ctx_need(hp, (enum mx_type)kv_type, n_ctx, ubatch,
                               plan->split ? plan->n_layer - plan->dev_layers : -1, &need, err);
    if (rc < 0)
        return rc;
    plan->n_ctx = n_ctx;
    plan->kv = need.kv;
    plan->kv_full = need.kv_full;
    plan->buffers = need.buffers;
    if (plan->split) {
        /* each side has a full scratch arena */
        plan->host_kv = need.kv_host;
        plan->host_buffers = plan->buffers;
        plan->host_total = plan->host_weights + plan->host_kv + plan->host_buffers;
    }
    plan->total = plan->weights + plan->kv + plan->buffers;
    return 0;
}

bool mx_app_split_cpu(void) {
    const char *v = getenv("MIXEL_SPLIT_CPU");
    return v && v[0] && strcmp(v, "0") != 0;
}

/* Whether device (a --device name, NULL/"auto" resolved) is one a model is split for: CUDA, or
 * the CPU playing a device under MIXEL_SPLIT_CPU. */
static bool split_device(const char *device) {
    const char *d = device && *device && strcmp(device, "auto") != 0 ? device : mx_device_best();
    return strncmp(d, "cuda", 4) == 0 || mx_app_split_cpu();
}

/* The weights' side of a split plan: bytes each side holds and the blocks on the device. */
static void plan_place(const struct mx_gguf *g, const struct mx_llama_hparams *hp, int gpu_layers,
                       int n_cpu_moe, struct mx_mem_plan *plan) {
    struct mx_llama_place p;
    mx_llama_place_init(&p, hp->n_layer, gpu_layers, n_cpu_moe);
    mx_llama_place_bytes(g, &p, &plan->weights, &plan->host_weights);
    plan->split = true;
    plan->n_layer = hp->n_layer;
    plan->dev_layers = hp->n_layer - p.i_dev;
    plan->host_avail = mx_app_mem_available();
}

/* The largest context in [16, hi] (a multiple of 256 from 256 on) whose plan fits plan->avail,
 * or 0 when not even 16 cells fit. Leaves plan at hi's numbers. */
static int64_t largest_fit(const struct mx_llama_hparams *hp, int kv_type, int ubatch,
                           int64_t hi, const struct mx_mem_plan *plan) {
    struct mx_mem_plan t = *plan;
    struct mx_err e = {0};
    int64_t lo = 16, best = 0;
    while (lo <= hi) { /* the need grows with n_ctx: bisect */
        int64_t mid = lo + (hi - lo) / 2;
        if (plan_ctx(hp, kv_type, ubatch, mid, &t, &e) == 0 && t.total <= plan->avail) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return best >= 256 ? best / 256 * 256 : best;
}

uint64_t mx_app_device_mem_available(const char *device, char *where, size_t n) {
    const char *d = device && *device && strcmp(device, "auto") != 0 ? device : mx_device_best();
    if (strncmp(d, "cuda", 4) != 0) {
        snprintf(where, n, "memory");
        return mx_app_mem_available();
    }
    int idx = mx_device_cuda_index(d); /* -1 (malformed): "the GPU", refused when opened */
    struct mx_cuda_info ci;
    mx_cuda_info_get(&ci);
    const char *fake = getenv("MIXEL_VRAM_AVAILABLE");
    snprintf(where, n, "VRAM on %.64s", idx >= 0 && idx < ci.n_devices ? ci.dev[idx].name
                                                                       : "the GPU");
    if (fake && fake[0])
        return strtoull(fake, NULL, 10);
    return idx >= 0 && idx < ci.n_devices ? (uint64_t)ci.dev[idx].free_mem : 0;
}

int mx_mem_plan_make(const char *path, int n_ctx, int kv_type, int ubatch,
                     struct mx_mem_plan *plan, struct mx_err *err) {
    return mx_mem_plan_make_on(path, "cpu", n_ctx, kv_type, ubatch, plan, err);
}

int mx_mem_plan_make_on(const char *path, const char *device, int n_ctx, int kv_type,
                        int ubatch, struct mx_mem_plan *plan, struct mx_err *err) {
    return mx_mem_plan_make_split(path, device, n_ctx, kv_type, ubatch, -1, 0, plan, err);
}

int mx_mem_plan_make_split(const char *path, const char *device, int n_ctx, int kv_type,
                           int ubatch, int gpu_layers, int n_cpu_moe, struct mx_mem_plan *plan,
                           struct mx_err *err) {
    memset(plan, 0, sizeof *plan);
    struct mx_gguf *g = NULL;
    int rc = mx_gguf_open(path, &g, err);
    if (rc < 0)
        return rc;
    struct mx_llama_hparams hp;
    if ((rc = mx_llama_hparams_read(g, &hp, err)) < 0 ||
        (rc = mx_llama_hparams_validate(&hp, err)) < 0) {
        mx_gguf_close(g);
        return rc;
    }
    /* the data section: every tensor's bytes with their alignment padding, as mapped */
    size_t fsz = mx_gguf_file_size(g), off = mx_gguf_data_offset(g);
    plan->weights = fsz > off ? fsz - off : 0;
    if (split_device(device))
        plan_place(g, &hp, gpu_layers, n_cpu_moe, plan);
    mx_gguf_close(g);
    plan->is_moe = hp.n_expert > 0;
    plan->n_ctx_train = hp.n_ctx_train;
    plan->avail = mx_app_device_mem_available(device, plan->where, sizeof plan->where);
    const char *fake = getenv("MIXEL_VRAM_AVAILABLE");
    if (plan->split && mx_app_split_cpu() && fake && fake[0]) { /* the CPU playing a device */
        snprintf(plan->where, sizeof plan->where, "device memory");
        plan->avail = strtoull(fake, NULL, 10);
    }
    int64_t want = n_ctx > 0 ? n_ctx : MX_MAX((int64_t)hp.n_ctx_train, 16);
    if ((rc = plan_ctx(&hp, kv_type, ubatch, want, plan, err)) < 0)
        return rc;
    if (n_ctx > 0 || plan->avail == 0 || plan->total <= plan->avail)
        return 0;
    int64_t fit = largest_fit(&hp, kv_type, ubatch, want, plan);
    if (fit == 0)
        return 0; /* not even the smallest context: mx_mem_plan_check refuses it */
    if ((rc = plan_ctx(&hp, kv_type, ubatch, fit, plan, err)) < 0)
        return rc;
    plan->capped = true;
    return 0;
}

int mx_mem_plan_check(const char *path, const struct mx_mem_plan *plan, int kv_type, int ubatch,
                      struct mx_err *err) {
    if (plan->avail == 0 || plan->total <= plan->avail)
        return 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char w[32], kv[32], b[32], t[32], a[32], fkv[32];
    char hint[96] = "";
    /* a context that fits with the same cache type: only when the weights leave room for one */
    struct mx_gguf *g = NULL;
    struct mx_err e = {0};
    struct mx_llama_hparams hp;
    if (mx_gguf_open(path, &g, &e) == 0 && mx_llama_hparams_read(g, &hp, &e) == 0 &&
        mx_llama_hparams_validate(&hp, &e) == 0) {
        int64_t fit = largest_fit(&hp, kv_type, ubatch, plan->n_ctx - 1, plan);
        struct mx_mem_plan f = *plan;
        if (fit > 0 && plan_ctx(&hp, kv_type, ubatch, fit, &f, &e) == 0)
            snprintf(hint, sizeof hint, "-c %lld (KV %s), ", (long long)fit,
                     mx_mem_fmt(f.kv, fkv, sizeof fkv));
    }
    mx_gguf_close(g);
    return mx_err_set(err, MX_ENOMEM,
                      "%s: does not fit in %s: model %s + KV %s (%s, %lld tokens) + buffers "
                      "%s = %s, %s available; try %s%sa smaller quant, or --no-mem-check",
                      base, plan->where[0] ? plan->where : "memory",
                      mx_mem_fmt(plan->weights, w, sizeof w),
                      mx_mem_fmt(plan->kv, kv, sizeof kv), mx_type_name((enum mx_type)kv_type),
                      (long long)plan->n_ctx, mx_mem_fmt(plan->buffers, b, sizeof b),
                      mx_mem_fmt(plan->total, t, sizeof t), mx_mem_fmt(plan->avail, a, sizeof a),
                      hint, kv_type == MX_TYPE_Q8_0 ? "" : "--kv-type q8_0, ");
}

/* The device bytes of plan at its context with another placement. */
static uint64_t dev_need(const struct mx_gguf *g, const struct mx_llama_hparams *hp,
                         const struct mx_mem_plan *plan, int kv_type, int ubatch,
                         int gpu_layers, int n_cpu_moe) {
    struct mx_mem_plan t = *plan;
    struct mx_err e = {0};
    plan_place(g, hp, gpu_layers, n_cpu_moe, &t);
    if (plan_ctx(hp, kv_type, ubatch, plan->n_ctx, &t, &e) < 0)
        return UINT64_MAX;
    return t.total;
}

int mx_mem_plan_check_split(const char *path, const struct mx_mem_plan *plan, int kv_type,
                            int ubatch, int n_cpu_moe, struct mx_err *err) {
    if (!plan->split)
        return mx_mem_plan_check(path, plan, kv_type, ubatch, err);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char w[32], kv[32], b[32], t[32], a[32], x[32], y[32];
    if (plan->avail > 0 && plan->total > plan->avail) {
        /* what would fit at this context: the experts on the host, then fewer blocks */
        char hint[192] = "";
        size_t o = 0;
        struct mx_gguf *g = NULL;
        struct mx_err e = {0};
        struct mx_llama_hparams hp;
        if (mx_gguf_open(path, &g, &e) == 0 && mx_llama_hparams_read(g, &hp, &e) == 0 &&
            mx_llama_hparams_validate(&hp, &e) == 0) {
            uint64_t need;
            if (plan->is_moe && n_cpu_moe >= 0 && n_cpu_moe < hp.n_layer &&
                (need = dev_need(g, &hp, plan, kv_type, ubatch, -1, -1)) <= plan->avail)
                o += (size_t)snprintf(hint + o, sizeof hint - o, "--cpu-moe (%s) or ",
                                      mx_mem_fmt(need, x, sizeof x));
            for (int ngl = hp.n_layer + 1; ngl >= 0 && o < sizeof hint; ngl--)
                if ((need = dev_need(g, &hp, plan, kv_type, ubatch, ngl, n_cpu_moe)) <=
                    plan->avail) {
                    o += (size_t)snprintf(hint + o, sizeof hint - o, "--gpu-layers %d (%s), ",
                                          ngl, mx_mem_fmt(need, y, sizeof y));
                    break;
                }
        }
        mx_gguf_close(g);
        return mx_err_set(err, MX_ENOMEM,
                          "%s: does not fit in %s: model %s + KV %s (%s, %lld tokens) + "
                          "buffers %s = %s, %s available; try %sa smaller -c, %sor "
                          "--no-mem-check", base, plan->where,
                          mx_mem_fmt(plan->weights, w, sizeof w),
                          mx_mem_fmt(plan->kv, kv, sizeof kv),
                          mx_type_name((enum mx_type)kv_type), (long long)plan->n_ctx,
                          mx_mem_fmt(plan->buffers, b, sizeof b),
                          mx_mem_fmt(plan->total, t, sizeof t),
                          mx_mem_fmt(plan->avail, a, sizeof a), hint,
                          kv_type == MX_TYPE_Q8_0 ? "" : "--kv-type q8_0, ");
    }
    if (plan->host_avail > 0 && plan->host_total > plan->host_avail)
        return mx_err_set(err, MX_ENOMEM,
                          "%s: the part left on the host does not fit in memory: model %s + KV "
                          "%s + buffers %s = %s, %s available; try more --gpu-layers, fewer "
                          "--n-cpu-moe, a smaller -c, or --no-mem-check", base,
                          mx_mem_fmt(plan->host_weights, w, sizeof w),
                          mx_mem_fmt(plan->host_kv, kv, sizeof kv),
                          mx_mem_fmt(plan->host_buffers, b, sizeof b),
                          mx_mem_fmt(plan->host_total, t, sizeof t),
                          mx_mem_fmt(plan->host_avail, a, sizeof a));
    return 0;
}
