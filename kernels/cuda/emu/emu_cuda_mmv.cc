/* emu_cuda_mmv.cc - kernels/cuda/cuda_mmv.cu compiled for the CPU emulator (cuda.am). */
#include "kernels/cuda/cuda_mmv.cu"
