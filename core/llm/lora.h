/* lora.h - LoRA adapters for the LLM engine, as llama.cpp writes them (convert_lora_to_gguf.py):
 * a GGUF with general.type "adapter", adapter.type "lora", adapter.lora.alpha, the base model's
 * general.architecture, and for each adapted weight W two tensors "<W's name>.lora_a"
 * ([n_in, rank], or [n_in, rank, n_expert] for MoE experts) and ".lora_b" ([rank, n_out(,
 * n_expert)]).
 *
 * Adapters are applied on the fly, as llama.cpp does: every matmul y = W x whose weight has an
 * adapter becomes y = W x + scale * (alpha / rank) * B (A x) (alpha 0: scale alone), so the
 * mapped (and possibly repacked) weights are never touched and an adapter costs only its own
 * bytes. Several adapters add up. A scale of 0 skips the adapter (the output is then exactly the
 * base model's).
 */
#ifndef MX_LLM_LORA_H
#define MX_LLM_LORA_H

#include <stdint.h>

#include "core/base/err.h"

struct mx_llama_model;
struct mx_backend;
struct mx_tensor;

/* Opens the adapter file path, checks it against model m (architecture; every tensor pairs up,
 * names a matmul weight m has, with matching shapes and a type the backend multiplies) and
 * attaches it with the given scale. Call before mx_llama_ctx_new (the context sizes its scratch
 * from the attached adapters). Returns 0, or MX_ENOENT / MX_EIO / MX_EFORMAT / MX_EUNSUP /
 * MX_ENOMEM with err naming the file and the tensor ("a.gguf: 'blk.3.attn_q.weight.lora_a' has
 * shape [64, 8], the model's weight [256, 256]"); m is unchanged then. Not thread-safe. */
int mx_llama_lora_add(struct mx_llama_model *m, const char *path, float scale,
                      struct mx_err *err);

/* Adapters attached to m. */
int mx_llama_lora_count(const struct mx_llama_model *m);

/* Frees every adapter of m (mx_llama_model_free calls it). */
void mx_llama_lora_free_all(struct mx_llama_model *m);

/* F32 elements of the two scratch tensors mx_llama_lora_apply needs for a chunk of n_tok tokens
 * (n_slot: experts used per token, 1 for dense models): *na for A x, *nb for B (A x). 0 and 0
 * when no adapter is attached. */
void mx_llama_lora_scratch(const struct mx_llama_model *m, int64_t n_tok, int64_t n_slot,
                           int64_t *na, int64_t *nb);

/* dst += the adapters' terms for weight w (the address of the model's tensor, as forward()
 * passes it), x its input: dst = W x already computed (ids NULL: mx_op_matmul shapes) or the
 * expert matmul's output (ids: the selected experts, mx_op_matmul_id shapes). sa, sb: scratch
 * of the sizes mx_llama_lora_scratch gives (1-D F32). Returns 0 or the backend's error. */
int mx_llama_lora_apply(struct mx_backend *be, const struct mx_llama_model *m,
                        struct mx_tensor *dst, const struct mx_tensor *w,
                        const struct mx_tensor *x, const struct mx_tensor *ids,
                        const struct mx_tensor *sa, const struct mx_tensor *sb);

#endif
