/* emu_internal.h - what the emulator's own files share (not seen by the .cu files). */
#ifndef MX_EMU_INTERNAL_H
#define MX_EMU_INTERNAL_H

#include <cuda_runtime.h>

/* Runs a whole grid now (emu_sched.cc): the configuration checks, then every block. */
cudaError_t mx_emu_run_grid(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem,
                            const std::function<void()> &body);

/* The device's opt-in limit of dynamic shared memory per block (an A100's: cc 8.0). */
#define MX_EMU_SMEM_OPTIN ((size_t)166912)

/* Records an error with its message (emu_runtime.cc); sticky ones fail every later call until
 * cudaDeviceReset, as a faulted CUDA context does. */
void mx_emu_set_error(cudaError_t e, const char *msg, bool sticky);

/* Whether [p, p + n) lies in one allocation the device may read: cudaMalloc'd memory or
 * pinned/registered host memory. */
bool mx_emu_device_range(const void *p, size_t n);

#endif
