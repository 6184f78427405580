/* cuda_none.c - the CUDA side of a CPU-only build: the query reports that CUDA is not compiled
 * in, and the constructor says so (the registry never offers the device then). */
#include "kernels/backend.h"
#include "kernels/devinfo.h"

#include <stdio.h>
#include <string.h>

void mx_cuda_info_get(struct mx_cuda_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->status, sizeof info->status,
             "not compiled in (configure found no nvcc; see README: Building with CUDA)");
}

struct mx_backend *mx_backend_cuda_new(int device, struct mx_err *err) {
    (void)device;
    mx_err_set(err, MX_ENODEV, "cuda: not compiled into this build (configure found no nvcc)");
    return NULL;
}
