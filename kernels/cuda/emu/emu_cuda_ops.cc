/* emu_cuda_ops.cc - kernels/cuda/cuda_ops.cu compiled for the CPU emulator (cuda.am). */
#include "kernels/cuda/cuda_ops.cu"
