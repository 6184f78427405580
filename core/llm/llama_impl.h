/* llama_impl.h - private structs shared by core/llm/llama.c (load) and core/llm/llama_ctx.c (forward,
 * KV cache), and core/llm/lora.c (adapters on the model's weights). Not part of the API: only
 * these files include it. */
#ifndef MX_LLAMA_IMPL_H
#define MX_LLAMA_IMPL_H

#include "core/llm/llama.h"
#include "kernels/backend.h"

/* One transformer block's weights: views into the mapped file. Shapes are ggml ne[] lists. */
struct mx_llama_layer {
    struct mx_tensor attn_norm;   /* [n_embd] F32 */
    struct mx_tensor wq;          /* [n_embd, n_head * head_dim] */
    struct mx_tensor wk;          /* [n_embd, n_head_kv * head_dim] */
    struct mx_tensor wv;          /* [n_embd, n_head_kv * head_dim] */
    struct mx_tensor wo;          /* [n_head * head_dim, n_embd] */
    struct mx_tensor ffn_norm;    /* [n_embd] F32 */
    /* dense FFN (n_expert == 0) */
    struct mx_tensor ffn_gate;    /* [n_embd, n_ff] */
    struct mx_tensor ffn_up;      /* [n_embd, n_ff] */
    struct mx_tensor ffn_down;    /* [n_ff, n_embd] */
    /* MoE FFN (n_expert > 0) */
    struct mx_tensor ffn_gate_inp;/* router [n_embd, n_expert] */
    struct mx_tensor gate_exps;   /* [n_embd, n_ff, n_expert] */
    struct mx_tensor up_exps;     /* [n_embd, n_ff, n_expert] */
    struct mx_tensor down_exps;   /* [n_ff, n_embd, n_expert] */

    /* ---- optional, per architecture (absent: data == NULL) ---- */
    /* attention biases (qwen2moe; any arch's file may carry them, as llama.cpp allows) */
    struct mx_tensor bq;          /* [n_head * head_dim] F32 */
    struct mx_tensor bk;          /* [n_head_kv * head_dim] F32 */
    struct mx_tensor bv;          /* [n_head_kv * head_dim] F32 */
    struct mx_tensor bo;          /* [n_embd] F32 (granite) */
    /* QK-norm (MX_LLAMA_F_QK_NORM_HEAD: [head_dim]; MX_LLAMA_F_QK_NORM_FULL: the whole
     * [n_head * head_dim] / [n_head_kv * head_dim] vectors) */
    struct mx_tensor q_norm;      /* F32 */
    struct mx_tensor k_norm;      /* F32 */
    /* shared expert (n_ff_shexp > 0): a dense SwiGLU every token runs next to its experts */
    struct mx_tensor gate_inp_shexp; /* [n_embd, 1] its sigmoid gate (MX_LLAMA_F_SHEXP_GATE) */
    struct mx_tensor gate_shexp;  /* [n_embd, n_ff_shexp] */
    struct mx_tensor up_shexp;    /* [n_embd, n_ff_shexp] */
    struct mx_tensor down_shexp;  /* [n_ff_shexp, n_embd] */
    /* gpt-oss (the biases above too; ffn_norm holds its post_attention_norm) */
    struct mx_tensor sinks;       /* F32 attention sink logit per head [n_head] */
    struct mx_tensor gate_inp_b;  /* F32 router bias [n_expert] */
    struct mx_tensor gate_exps_b; /* F32 per-expert biases [n_ff, n_expert] */
    struct mx_tensor up_exps_b;   /* F32 [n_ff, n_expert] */
    struct mx_tensor down_exps_b; /* F32 [n_embd, n_expert] */

    /* placement (core/llm/placement.c): the backend holding the block's weights, which runs
     * its ops; the experts (and gpt-oss's expert biases) may stay on the host (--cpu-moe) */
    struct mx_backend *be;        /* attention, norms, router, dense FFN, shared expert */
    struct mx_backend *be_exps;   /* gate_exps, up_exps, down_exps (+ their biases) */
};

struct mx_llama_model {
    struct mx_llama_hparams hp;
    struct mx_gguf *gguf;         /* owned: the mapping every weight points into */
    struct mx_backend *be;        /* borrowed */
    struct mx_buf *wbuf;          /* the data section wrapped for the backend (owned) */
    const char *host_base;        /* start of the data section in the mapping (borrowed) */
    void *owned_experts;          /* experts stored as separate 2-D tensors, gathered (owned) */
    struct mx_buf *ebuf;          /* owned_experts wrapped (owned) */
    struct mx_buf **pbufs;        /* the backend's prepared (repacked) weights, one per matrix */
    int n_pbufs;
    struct mx_tensor tok_embd;    /* [n_embd, n_vocab] */
    struct mx_tensor output_norm; /* [n_embd] F32 */
    struct mx_tensor output;      /* [n_embd, n_vocab] (tok_embd when tied) */
    struct mx_tensor rope_freqs;  /* [head_dim / 2] F32 Llama 3.1 frequency factors (or absent) */
    struct mx_llama_layer *layers;/* n_layer */
    struct mx_llama_size size;    /* parameter/byte counts */
    struct mx_llama_lora **loras; /* LoRA adapters applied on the fly (owned; core/llm/lora.h) */
    int n_loras;
    /* a split between be and a host backend (struct mx_llama_load_opts; placement.c) */
    struct mx_backend *host;      /* borrowed; NULL: everything on be */
    struct mx_backend *be_embd;   /* holds tok_embd (host when split, else be) */
    struct mx_backend *be_out;    /* holds output_norm and output */
    struct mx_tensor rope_freqs_dev; /* be's copy of rope_freqs when split (or absent) */
    bool split;                   /* some weights run on host, others on be */
    struct mx_buf **dbufs;        /* be's copies of the weights placed on it (owned), n_dbufs */
    int n_dbufs;
};

#endif
