/* emu_cuda_info.cc - kernels/cuda/cuda_info.cu compiled for the CPU emulator (cuda.am). */
#include "kernels/cuda/cuda_info.cu"
