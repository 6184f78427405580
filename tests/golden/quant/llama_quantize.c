/* llama_quantize.c - llama.cpp's llama_model_quantize (no importance matrix) from the command
 * line, for the golden hashes of tests/quantize.sh: the peer's own type mix and quantizers.
 * Not built by make. Build against the npm peer of ../shared/tools/peer-llama (its build.sh
 * leaves the headers in src/ and the libraries in node_modules/):
 *   bins=$PEER/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
 *   gcc -O2 -o llama_quantize llama_quantize.c -I $PEER/src/include -I $PEER/src/ggml/include \
 *       -DBACKEND_DIR="\"$bins\"" -L$bins -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so \
 *       -l:libggml-base.so -Wl,-rpath,$bins -lm
 * usage: llama_quantize IN.gguf OUT.gguf FTYPE   (llama.cpp's number, e.g. 12 for Q3_K_M) */
#include <stdio.h>
#include <stdlib.h>

#include "ggml-backend.h"
#include "llama.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: llama_quantize IN.gguf OUT.gguf FTYPE\n");
        return 2;
    }
    ggml_backend_load_all_from_path(BACKEND_DIR);
    llama_backend_init();
    llama_model_quantize_params p = llama_model_quantize_default_params();
    p.ftype = (enum llama_ftype)atoi(argv[3]);
    p.nthread = 2;
    p.allow_requantize = true; /* the d256 goldens start from a Q4_K file, as mixel's do */
    uint32_t rc = llama_model_quantize(argv[1], argv[2], &p);
    llama_backend_free();
    return rc ? 1 : 0;
}
