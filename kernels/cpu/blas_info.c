/* blas_info.c - which OpenBLAS the process loaded and how it is threaded. */
#include "kernels/devinfo.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

void mx_blas_info_get(struct mx_blas_info *info) {
    memset(info, 0, sizeof *info);
    const char *cfg = openblas_get_config();
    const char *core = openblas_get_corename();
    snprintf(info->config, sizeof info->config, "%s", cfg ? cfg : "unknown");
    snprintf(info->core, sizeof info->core, "%s", core ? core : "unknown");
    info->n_threads = openblas_get_num_threads();
}
