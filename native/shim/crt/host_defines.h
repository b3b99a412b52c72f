/* Minimal stand-in for the CUDA toolkit's crt/host_defines.h (shipped by the nvcc packages, not by
   the nvidia-cuda-runtime wheels): the macros the runtime type headers use, for a host-only C build. */
#ifndef BLACKWELL_SHIM_HOST_DEFINES_H
#define BLACKWELL_SHIM_HOST_DEFINES_H
#define __host__
#define __device__
#define __global__
#define __shared__
#define __constant__
#define __managed__
#define __device_builtin__
#define __device_builtin_texture_type__
#define __device_builtin_surface_type__
#define __cudart_builtin__
#define __builtin_align__(a) __attribute__((aligned(a)))
#define __align__(n) __attribute__((aligned(n)))
#define __inline__ __inline__
#define CUDARTAPI
#define __CUDA_ALIGN__(n) __attribute__((aligned(n)))
#endif
