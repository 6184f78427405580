/* llama_quantize.c - llama.cpp's llama_model_quantize from the command line, for the golden
 * hashes of tests/quantize.sh (no importance matrix) and tests/imatrix_quantize.sh (with a
 * legacy .dat imatrix, read here and normalised as llama-quantize's load_imatrix does: values /
 * ncall): the peer's own type mix and quantizers.
 * Not built by make. Build against the npm peer of ../shared/tools/peer-llama (its build.sh
 * leaves the headers in src/ and the libraries in node_modules/):
 *   bins=$PEER/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
 *   gcc -O2 -o llama_quantize llama_quantize.c -I $PEER/src/include -I $PEER/src/ggml/include \
 *       -DBACKEND_DIR="\"$bins\"" -L$bins -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so \
 *       -l:libggml-base.so -Wl,-rpath,$bins -lm
 * usage: llama_quantize IN.gguf OUT.gguf FTYPE [IMATRIX.dat]
 *        (FTYPE: llama.cpp's number, e.g. 12 for Q3_K_M) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "llama.h"

/* Reads a legacy imatrix (i32 n, then per entry i32 len, name, i32 ncall, i32 nval, nval f32)
 * into a NULL-terminated array for llama_model_quantize_params.imatrix; exits on a bad file. */
static struct llama_model_imatrix_data *read_dat(const char *path) {
    FILE *f = fopen(path, "rb");
    int32_t n;
    if (!f || fread(&n, 4, 1, f) != 1 || n < 1) {
        fprintf(stderr, "%s: cannot read\n", path);
        exit(1);
    }
    struct llama_model_imatrix_data *d = calloc((size_t)n + 1, sizeof *d);
    for (int32_t i = 0; i < n; i++) {
        int32_t len, ncall, nval;
        if (fread(&len, 4, 1, f) != 1 || len < 1 || len > 4096)
            exit(1);
        char *name = calloc((size_t)len + 1, 1);
        if (fread(name, 1, (size_t)len, f) != (size_t)len || fread(&ncall, 4, 1, f) != 1 ||
            fread(&nval, 4, 1, f) != 1 || nval < 1)
            exit(1);
        float *v = malloc((size_t)nval * sizeof *v);
        if (fread(v, 4, (size_t)nval, f) != (size_t)nval)
            exit(1);
        for (int32_t k = 0; ncall > 0 && k < nval; k++)
            v[k] = v[k] / ncall;
        d[i] = (struct llama_model_imatrix_data){name, v, (size_t)nval};
    }
    fclose(f);
    return d;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: llama_quantize IN.gguf OUT.gguf FTYPE [IMATRIX.dat]\n");
        return 2;
    }
    ggml_backend_load_all_from_path(BACKEND_DIR);
    llama_backend_init();
    llama_model_quantize_params p = llama_model_quantize_default_params();
    p.ftype = (enum llama_ftype)atoi(argv[3]);
    p.nthread = 2;
    p.allow_requantize = true; /* the d256 goldens start from a Q4_K file, as mixel's do */
    if (argc == 5)
        p.imatrix = read_dat(argv[4]);
    uint32_t rc = llama_model_quantize(argv[1], argv[2], &p);
    llama_backend_free();
    return rc ? 1 : 0;
}
