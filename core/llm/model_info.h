/* model_info.h - facts about an LLM read from its GGUF without loading it: parameter counts,
 * total and active per token for mixtures of experts (only n_used of n_expert expert FFNs run),
 * and the tensor-type histogram. Used by `mixel inspect`.
 */
#ifndef MX_MODEL_INFO_H
#define MX_MODEL_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/quant.h"
#include "core/format/gguf.h"

struct mx_llm_params {
    int64_t n_expert;                 /* <arch>.expert_count, 0 for a dense model */
    int64_t n_used;                   /* <arch>.expert_used_count, 0 when absent */
    double total;                     /* elements of every tensor */
    double experts;                   /* elements of the expert FFN tensors (all experts) */
    double active;                    /* total - experts + experts * n_used / n_expert */
    bool moe;                         /* n_expert > 1 and expert tensors were found */
    int64_t type_count[MX_TYPE_COUNT]; /* tensors per mx_type */
    size_t type_bytes[MX_TYPE_COUNT];  /* bytes per mx_type */
};

/* Fills *p from g's metadata and tensor list. Never fails: missing keys count as 0. */
void mx_llm_count_params(const struct mx_gguf *g, struct mx_llm_params *p);

#endif
