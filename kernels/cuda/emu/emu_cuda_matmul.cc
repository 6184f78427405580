/* emu_cuda_matmul.cc - kernels/cuda/cuda_matmul.cu compiled for the CPU emulator (cuda.am). */
#include "kernels/cuda/cuda_matmul.cu"
