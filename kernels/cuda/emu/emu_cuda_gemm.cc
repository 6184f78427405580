/* emu_cuda_gemm.cc - kernels/cuda/cuda_gemm.cu compiled for the CPU emulator (cuda.am). */
#include "kernels/cuda/cuda_gemm.cu"
