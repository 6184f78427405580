/* cuda_none.c - the CUDA query of a CPU-only build: reports that CUDA is not compiled in. */
#include "kernels/devinfo.h"

#include <stdio.h>
#include <string.h>

void mx_cuda_info_get(struct mx_cuda_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->status, sizeof info->status,
             "not compiled in (configure found no nvcc; see README: Building with CUDA)");
}
