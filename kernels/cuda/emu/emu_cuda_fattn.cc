/* emu_cuda_fattn.cc - kernels/cuda/cuda_fattn.cu compiled for the CPU emulator (cuda.am). */
#include "kernels/cuda/cuda_fattn.cu"
