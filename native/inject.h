/* The CUPTI injection library of blackwell-exporter: shared declarations.
 *
 * inject.c holds the lifecycle (InitializeInjection, the window thread, fork and exit) and finds
 * and binds libcupti at run time; table.c the bounded per-GPU name table, the JSON state file and
 * the names files beside it (format: docs/dispatch-state.md, version 4). */
#ifndef BLACKWELL_INJECT_H
#define BLACKWELL_INJECT_H

#include <stddef.h>
#include <stdint.h>

#define BW_MAX_GPUS 64
#define BW_TEXT 512

/* Offsets of the fields read from a CUPTI kernel activity record. The same in CUpti_ActivityKernel9
 * (CUPTI 12.x) and CUpti_ActivityKernel10 (13.x): inject.c asserts them against the header it is
 * built with, and tests/unit/test_inject_native.py builds against both header versions. */
#define BW_OFFSET_KIND 0
#define BW_OFFSET_START 16
#define BW_OFFSET_END 24
#define BW_OFFSET_DEVICE 40
#define BW_OFFSET_NAME 104
#define BW_KIND_CONCURRENT_KERNEL 10

/* The CUDA runtime calls at whose exit CUPTI may be finalized (inject.c detaches there after a
 * window): calls that enqueue no GPU work. Finalizing at the exit of a launch (cudaGraphLaunch, a
 * kernel launch, also one being captured into a graph) broke the launched work with "unspecified
 * launch failure" on an H200 (bench/results/inject_h200.md); these sites did not. Needs cupti.h. */
#define BW_DETACH_SITES                                                                                        \
    {CUPTI_RUNTIME_TRACE_CBID_cudaGetLastError_v3020,        CUPTI_RUNTIME_TRACE_CBID_cudaPeekAtLastError_v3020,     \
     CUPTI_RUNTIME_TRACE_CBID_cudaSetDevice_v3020,           CUPTI_RUNTIME_TRACE_CBID_cudaGetDevice_v3020,           \
     CUPTI_RUNTIME_TRACE_CBID_cudaMemGetInfo_v3020,          CUPTI_RUNTIME_TRACE_CBID_cudaThreadSynchronize_v3020,   \
     CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_v3020,   CUPTI_RUNTIME_TRACE_CBID_cudaStreamQuery_v3020,         \
     CUPTI_RUNTIME_TRACE_CBID_cudaEventSynchronize_v3020,    CUPTI_RUNTIME_TRACE_CBID_cudaEventQuery_v3020,          \
     CUPTI_RUNTIME_TRACE_CBID_cudaEventElapsedTime_v3020,    CUPTI_RUNTIME_TRACE_CBID_cudaPointerGetAttributes_v4000, \
     CUPTI_RUNTIME_TRACE_CBID_cudaDeviceSynchronize_v3020,   CUPTI_RUNTIME_TRACE_CBID_cudaDeviceGetAttribute_v5000,  \
     CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_ptsz_v7000, CUPTI_RUNTIME_TRACE_CBID_cudaStreamQuery_ptsz_v7000, \
     CUPTI_RUNTIME_TRACE_CBID_cudaStreamIsCapturing_v10000,  CUPTI_RUNTIME_TRACE_CBID_cudaStreamIsCapturing_ptsz_v10000}

typedef struct bw_entry {
    char *raw;           /* the name as CUPTI reported it (hash key) */
    char *demangled;     /* what the state file shows */
    uint64_t hash;
    uint64_t launches;
    uint64_t ns;
} bw_entry;

typedef struct bw_gpu {
    int seen;
    char label[32];
    char uuid[48];
    uint64_t kernels, kernel_ns;
    uint64_t overflow_launches, overflow_ns;
    size_t count, capacity; /* open addressing, capacity a power of two >= 2 * max_names */
    bw_entry *slots;
    size_t *order;          /* slot indices in insertion order, for a stable file */
    char names_file[256];   /* the names file's name in the state directory; empty until its first write */
    size_t names_written;   /* names of order[] appended to it so far */
    uint64_t names_bytes;   /* its length after them */
} bw_gpu;

typedef struct bw_stats {
    const char *status, *reason;
    char detail[BW_TEXT];
    double duty_cycle, period_seconds, started_at, sampled_seconds;
    uint64_t windows, windows_skipped, records, incomplete_records, dropped_records, detaches;
    size_t max_names;
    int pid;
    const char *process;
} bw_stats;

typedef char *(*bw_demangler)(const char *mangled, char *out, size_t *length, int *status);

void bw_table_init(size_t max_names, bw_demangler demangle);
/* Folds one kernel record into the table; returns 0 if the record had no valid duration. */
int bw_table_add(uint32_t device, const char *name, uint64_t start, uint64_t end);
void bw_table_set_label(uint32_t device, const char *label, const char *uuid);
int bw_table_has_label(uint32_t device);
/* Appends each GPU's new names to its names file, then writes the state file atomically; returns 0
 * or an errno value (a names file that cannot be written leaves its new names out of the state). */
int bw_state_write(const char *directory, const char *file_name, const bw_stats *stats);

#endif
