/* memplan.h - will a model fit? The memory an LLM needs (weights, KV cache, work buffers),
 * computed from the GGUF header before anything is loaded, against what the machine can give;
 * and the one place that asks how much memory is available (with the tests' stand-in).
 *
 * mx_llm_open (app/llm.h) plans every model it opens, so run, chat, bench, serve and the TUI
 * refuse a model that would swap the machine to death with the same numbers, and choose the
 * same context when none was asked for.
 *
 * Weights are counted as the tensor bytes of the file, experts of a MoE model included: the
 * experts are mapped and paged in on demand, but the router may pick any of them for any token,
 * so over a conversation every expert is read; a machine that holds only part of them re-reads
 * the disk on most tokens (the clean pages are dropped and faulted in again), which is the
 * swapping this check is there to prevent. --no-mem-check is for those who know better (swap on
 * a fast disk, zram, a model whose experts are mostly idle for their prompts).
 */
#ifndef MX_MEMPLAN_H
#define MX_MEMPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

/* Bytes the machine can still give this process (mx_mem_available), or 0 when unknown. The
 * environment variable MIXEL_MEM_AVAILABLE (bytes) stands in for it when set: how the tests
 * simulate a small machine (image jobs, model planning). */
uint64_t mx_app_mem_available(void);

/* The plan of one model load. */
struct mx_mem_plan {
    uint64_t weights;     /* tensor bytes of the file (see the top of this file for MoE) */
    uint64_t kv;          /* the KV cache for n_ctx cells of the chosen type */
    uint64_t kv_full;     /* kv (+ host_kv) if sliding-window layers kept every cell (= kv +
                             host_kv without such layers): their trimming saves kv_full - kv -
                             host_kv */
    uint64_t buffers;     /* scratch arena and host arrays of the context */
    uint64_t total;       /* the sum */
    uint64_t avail;       /* what the machine can give (0: unknown, nothing checked) */
    int64_t n_ctx;        /* cells: the asked context, or the largest that fits when none was */
    int64_t n_ctx_train;  /* the model's context_length */
    bool capped;          /* n_ctx was chosen below the model's context to fit memory */
    bool is_moe;          /* the model has experts (weights count all of them) */
    char where[96];       /* what avail is: "memory", or "VRAM on NVIDIA H100 80GB HBM3" */
    /* on a device, the part that stays in host memory (core/llm/placement.h): the embedding,
     * and the blocks / experts --gpu-layers / --cpu-moe leave there; the fields above are then
     * the device's part */
    bool split;           /* a device with a host part (always for CUDA) */
    int32_t n_layer;      /* blocks of the model */
    int32_t dev_layers;   /* blocks on the device (their KV cache is there) */
    uint64_t host_weights;/* tensor bytes left on the host */
    uint64_t host_kv;     /* KV cache of the blocks on the host */
    uint64_t host_buffers;/* the host's scratch arena and host arrays */
    uint64_t host_total;  /* the sum */
    uint64_t host_avail;  /* RAM the machine can give (0: unknown) */
};

/* Whether MIXEL_SPLIT_CPU=1 asks a CPU backend to play the device (tests of the split on
 * machines without a GPU; its memory is then MIXEL_VRAM_AVAILABLE when set). */
bool mx_app_split_cpu(void);

/* Bytes device (a --device name: NULL/"auto", "cpu", "cuda", "cuda:N") can still give, and in
 * where what that is: RAM (mx_app_mem_available) for the CPU, the GPU's free VRAM for CUDA
 * (MIXEL_VRAM_AVAILABLE stands in for it, as MIXEL_MEM_AVAILABLE does for RAM). 0: unknown. */
uint64_t mx_app_device_mem_available(const char *device, char *where, size_t n);

/* Plans opening path with n_ctx cells (0: the model's context, capped to what fits) of
 * kv_type (enum mx_type) and ubatch (0: 512), against mx_app_mem_available(). Reads only the
 * GGUF header. Returns 0 with *plan (also when it does not fit: check plan->total against
 * plan->avail with mx_mem_plan_check), or the GGUF reader's / hyperparameter error. */
int mx_mem_plan_make(const char *path, int n_ctx, int kv_type, int ubatch,
                     struct mx_mem_plan *plan, struct mx_err *err);

/* The same against the memory of device (mx_app_device_mem_available): on a GPU the weights,
 * the KV cache and the buffers all live in its VRAM. */
int mx_mem_plan_make_on(const char *path, const char *device, int n_ctx, int kv_type,
                        int ubatch, struct mx_mem_plan *plan, struct mx_err *err);

/* The same for a device with gpu_layers (< 0: all) and n_cpu_moe (< 0: all) as in
 * struct mx_gen_settings: the device's part in the main fields, the host's in host_*. */
int mx_mem_plan_make_split(const char *path, const char *device, int n_ctx, int kv_type,
                           int ubatch, int gpu_layers, int n_cpu_moe, struct mx_mem_plan *plan,
                           struct mx_err *err);

/* 0 when plan fits (or availability is unknown); else MX_ENOMEM with err saying the numbers and
 * what would fit: "M.gguf: does not fit in memory: model 24.6 GiB + KV 4.0 GiB (f16, 32768
 * tokens) + buffers 0.3 GiB = 28.9 GiB, 12.1 GiB available; try -c 8192 (KV 1.0 GiB),
 * --kv-type q8_0, a smaller quant, or --no-mem-check". */
int mx_mem_plan_check(const char *path, const struct mx_mem_plan *plan, int kv_type, int ubatch,
                      struct mx_err *err);

/* For a split plan: MX_ENOMEM when the device part does not fit, with the numbers and the
 * --gpu-layers / --cpu-moe choices that would ("try --cpu-moe (VRAM 3.1 GiB) or --gpu-layers
 * 20 (VRAM 7.9 GiB)"), or when the host part does not fit the machine's memory; else 0. */
int mx_mem_plan_check_split(const char *path, const struct mx_mem_plan *plan, int kv_type,
                            int ubatch, int n_cpu_moe, struct mx_err *err);

/* "12.1 GiB", "3.4 MiB", "512 KiB" into buf (size bytes); returns buf. */
const char *mx_mem_fmt(uint64_t bytes, char *buf, size_t size);

#endif
