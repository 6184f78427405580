/* placement.h - which parts of an LLM live on the device and which stay in host memory, for
 * models larger than VRAM: llama.cpp's -ngl (the last N blocks, the output layer counted as
 * one) and --cpu-moe / --n-cpu-moe (expert weights of the first N blocks stay on the host while
 * attention, router and shared expert run on the device). The input embedding always stays on
 * the host, as llama.cpp keeps its input layer on the CPU.
 *
 * One rule, used twice: by the loader (core/llm/llama.c copies the device parts into the
 * device's memory and tags each block with the backend that runs it) and by the memory plan
 * (app/memplan.c counts the bytes each side needs before anything is loaded), so the plan and
 * the load cannot disagree.
 */
#ifndef MX_LLM_PLACEMENT_H
#define MX_LLM_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/err.h"

struct mx_gguf;
struct mx_llama_hparams;
struct mx_llama_model;
struct mx_llama_load_opts;

/* A resolved placement of one model. */
struct mx_llama_place {
    int32_t n_layer;    /* blocks of the model */
    int32_t i_dev;      /* first block on the device: blocks [i_dev, n_layer) are there */
    bool out_dev;       /* output_norm and output on the device */
    int32_t n_cpu_moe;  /* blocks [0, n_cpu_moe) keep their experts on the host */
};

/* Resolves --gpu-layers (< 0: all, n_layer + 1) and --n-cpu-moe (< 0: every block) for a model
 * of n_layer blocks, as llama.cpp: i_dev = max(n_layer + 1 - gpu_layers, 0), the output on the
 * device iff gpu_layers >= 1. */
void mx_llama_place_init(struct mx_llama_place *p, int32_t n_layer, int gpu_layers,
                         int n_cpu_moe);

/* Whether block il's attention/dense part, and its experts, are on the device. */
bool mx_llama_place_layer_dev(const struct mx_llama_place *p, int il);
bool mx_llama_place_exps_dev(const struct mx_llama_place *p, int il);

/* Bytes of g's tensors that p puts on the device (*dev) and leaves on the host (*host), by
 * tensor name (token_embd on the host; a tied output copied to the device when the output is
 * there; rope_freqs on both). For the memory plan: reads only the header. */
void mx_llama_place_bytes(const struct mx_gguf *g, const struct mx_llama_place *p,
                          uint64_t *dev, uint64_t *host);

/* The loader's half (core/llm/llama.c, after every tensor is bound as a view of the mapping):
 * with o->host set, tags each block with the backends of its parts, copies the device parts
 * into be's memory (one buffer per tensor, kept in m->dbufs; the file's pages of a moved tensor
 * are released), then lets each backend prepare its matmul weights (the CPU repacks them;
 * MIXEL_NO_REPACK=1 skips that); without a host, only the preparing. Reports the bytes done
 * through o->progress. Returns 0 or MX_ENOMEM / a backend error (err says which tensor). */
int mx_llama_place_weights(struct mx_llama_model *m, const struct mx_llama_load_opts *o,
                           struct mx_err *err);

#endif
