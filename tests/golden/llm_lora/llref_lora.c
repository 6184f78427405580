/* llref_lora.c - the peer for LoRA adapters: llama.cpp (the libllama of node-llama-cpp 3.21.1,
 * as ../shared/tools/peer-llama builds it) with one adapter at a scale, printing the logits at
 * every position of a token list as JSON (the golden test_llm_lora compares mixel against).
 *
 *   llref_lora MODEL ADAPTER SCALE ID...
 *
 * Settings as the refs/llm goldens: CPU, 2 threads, F32 KV cache, flash attention off, n_ctx
 * 2048, one batch. Built by make_goldens.sh; not part of mixel (it links llama.cpp).
 */
#include <stdio.h>
#include <stdlib.h>

#include "ggml-backend.h"
#include "llama.h"

static void quiet_log(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (level >= GGML_LOG_LEVEL_WARN || getenv("LLREF_VERBOSE"))
        fputs(text, stderr);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: llref_lora MODEL ADAPTER SCALE ID...\n");
        return 1;
    }
    float scale = (float)atof(argv[3]);
    int nt = argc - 4;
    llama_log_set(quiet_log, NULL);
    ggml_backend_load_all_from_path(BACKEND_DIR);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    if (!m) {
        fprintf(stderr, "load failed: %s\n", argv[1]);
        return 2;
    }
    struct llama_adapter_lora *ad = llama_adapter_lora_init(m, argv[2]);
    if (!ad) {
        fprintf(stderr, "adapter failed: %s\n", argv[2]);
        return 2;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c || llama_set_adapters_lora(c, &ad, 1, &scale) != 0) {
        fprintf(stderr, "context or adapter setup failed\n");
        return 2;
    }
    struct llama_batch b = llama_batch_init(nt, 0, 1);
    b.n_tokens = nt;
    for (int i = 0; i < nt; i++) {
        b.token[i] = atoi(argv[4 + i]);
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    if (llama_decode(c, b)) {
        fprintf(stderr, "decode failed\n");
        return 3;
    }
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(m));
    printf("{\"format\": \"mixel-lora-logits-v1\", \"producer\": \"llama.cpp v0.4.0 "
           "(node-llama-cpp 3.21.1) via tests/golden/llm_lora/llref_lora.c\",\n"
           " \"scale\": %.9g, \"ids\": [", scale);
    for (int i = 0; i < nt; i++)
        printf("%s%d", i ? ", " : "", b.token[i]);
    printf("],\n \"logits\": [\n");
    for (int i = 0; i < nt; i++) {
        const float *l = llama_get_logits_ith(c, i);
        printf("  [");
        for (int j = 0; j < nv; j++)
            printf("%s%.7g", j ? ", " : "", l[j]);
        printf("]%s\n", i + 1 < nt ? "," : "");
    }
    printf(" ]}\n");
    llama_batch_free(b);
    llama_free(c);
    llama_model_free(m);
    llama_backend_free();
    return 0;
}
