/* emu_cuda_backend.cc - kernels/cuda/cuda_backend.cu compiled for the CPU emulator (cuda.am). */
#include "kernels/cuda/cuda_backend.cu"
