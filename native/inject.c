/* Entry point and lifecycle of the injection library: InitializeInjection (called by the CUDA
 * driver at cuInit when CUDA_INJECTION64_PATH names this file), the duty-cycle window thread,
 * fork and exit handling. A guest in someone else's process: every failure is one stderr line
 * and a status in the state file, never a crash or a stall. */
#define _GNU_SOURCE
#include "inject.h"

#include <cupti.h>
#include <dlfcn.h>
#include <errno.h>
#include <glob.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if CUPTI_API_VERSION >= 130000
typedef CUpti_ActivityKernel10 bw_kernel_record;
#else
typedef CUpti_ActivityKernel9 bw_kernel_record;
#endif
_Static_assert(offsetof(bw_kernel_record, kind) == BW_OFFSET_KIND, "CUPTI kernel record: kind moved");
_Static_assert(offsetof(bw_kernel_record, start) == BW_OFFSET_START, "CUPTI kernel record: start moved");
_Static_assert(offsetof(bw_kernel_record, end) == BW_OFFSET_END, "CUPTI kernel record: end moved");
_Static_assert(offsetof(bw_kernel_record, deviceId) == BW_OFFSET_DEVICE, "CUPTI kernel record: deviceId moved");
_Static_assert(offsetof(bw_kernel_record, name) == BW_OFFSET_NAME, "CUPTI kernel record: name moved");
_Static_assert(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL == BW_KIND_CONCURRENT_KERNEL, "activity kind value");
_Static_assert(CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED == 39, "CUPTI error value");

#define BUFFER_BYTES (4u << 20)
#define MAX_BUFFERS 8 /* at most 32 MiB of activity buffers; CUPTI drops (and counts) beyond that */
#define SETTLE_NS 20000000L
#define EXIT_JOIN_SECONDS 2

typedef struct cupti_api {
    CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *);
    CUptiResult (*unsubscribe)(CUpti_SubscriberHandle);
    CUptiResult (*register_callbacks)(CUpti_BuffersCallbackRequestFunc, CUpti_BuffersCallbackCompleteFunc);
    CUptiResult (*enable)(CUpti_ActivityKind);
    CUptiResult (*disable)(CUpti_ActivityKind);
    CUptiResult (*flush_all)(uint32_t);
    CUptiResult (*next_record)(uint8_t *, size_t, CUpti_Activity **);
    CUptiResult (*dropped)(CUcontext, uint32_t, size_t *);
    CUptiResult (*result_string)(CUptiResult, const char **);
    /* Optional (NULL when absent): detaching between windows, as NVIDIA's cupti_finalize sample does. */
    CUptiResult (*enable_callback)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain, CUpti_CallbackId);
    CUptiResult (*finalize)(void);
} cupti_api;

static struct {
    char state_dir[2048];
    char process[256];
    char file_name[300];
    char cupti_path[2048];
    double duty, period, start_delay;
    size_t max_names;
    int detach;
} config;

static cupti_api api;
static bw_stats stats;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;
static pthread_t sampler_thread;
static pid_t owner_pid;
static atomic_int initialized, thread_started, stopping, finished, outstanding_buffers;
static int write_failing;

static void log_line(const char *format, ...) {
    char text[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    fprintf(stderr, "blackwell-inject[%d]: %s\n", (int)getpid(), text);
}

/* ---- settings ------------------------------------------------------------------------------- */

static double env_double(const char *name, double fallback, double low, double high) {
    const char *text = getenv(name);
    if (!text || !*text) return fallback;
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || end == text || *end || !(value >= low && value <= high)) {
        log_line("%s=%s is not a number in [%g, %g]; using %g", name, text, low, high, fallback);
        return fallback;
    }
    return value;
}

static int name_is_safe(const char *name) {
    if (!*name || name[0] == '.' || strlen(name) > 200) return 0;
    for (const char *p = name; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x20) return 0;
    return 1;
}

static void choose_process_name(void) {
    static const char *ranks[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
    const char *explicit = getenv("BLACKWELL_DISPATCH_PROCESS");
    if (explicit && *explicit) {
        if (name_is_safe(explicit)) {
            snprintf(config.process, sizeof config.process, "%s", explicit);
            return;
        }
        log_line("BLACKWELL_DISPATCH_PROCESS=%s is not a file name; using the default name", explicit);
    }
    for (size_t i = 0; i < sizeof ranks / sizeof *ranks; i++) {
        const char *value = getenv(ranks[i]);
        if (value && *value && strspn(value, "0123456789") == strlen(value) && strlen(value) < 12) {
            snprintf(config.process, sizeof config.process, "rank%s", value);
            return;
        }
    }
    snprintf(config.process, sizeof config.process, "pid%d", (int)owner_pid);
}

/* The pid written in an existing state file of that name, or 0. */
static int pid_in_file(const char *path) {
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    char head[512] = {0};
    size_t n = fread(head, 1, sizeof head - 1, file);
    fclose(file);
    head[n] = 0;
    const char *at = strstr(head, "\"pid\":");
    return at ? atoi(at + 6) : 0;
}

/* Two live processes must never share a file: append -pid<PID> when another live pid holds the name. */
static void choose_file_name(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.json", config.state_dir, config.process);
    int other = pid_in_file(path);
    if (other > 0 && other != owner_pid && (kill(other, 0) == 0 || errno == EPERM)) {
        size_t length = strlen(config.process);
        snprintf(config.process + length, sizeof config.process - length, "-pid%d", (int)owner_pid);
    }
    snprintf(config.file_name, sizeof config.file_name, "%s.json", config.process);
}

static void read_settings(void) {
    const char *dir = getenv("BLACKWELL_DISPATCH_STATE_DIR");
    snprintf(config.state_dir, sizeof config.state_dir, "%s", dir && *dir ? dir : "/tmp/blackwell-exporter/dispatch");
    config.duty = env_double("BLACKWELL_DISPATCH_DUTY_CYCLE", 0.1, 0.0, 1.0);
    config.period = env_double("BLACKWELL_DISPATCH_PERIOD", 30.0, 0.001, 86400.0);
    config.max_names = (size_t)env_double("BLACKWELL_DISPATCH_MAX_NAMES", 2048, 1, 1000000);
    config.start_delay = env_double("BLACKWELL_DISPATCH_START_DELAY", 0.0, 0.0, 86400.0);
    config.detach = env_double("BLACKWELL_DISPATCH_DETACH", 1, 0, 1) != 0;
    const char *cupti = getenv("BLACKWELL_DISPATCH_CUPTI");
    snprintf(config.cupti_path, sizeof config.cupti_path, "%s", cupti ? cupti : "");
    choose_process_name();
    choose_file_name();
}

/* ---- state ---------------------------------------------------------------------------------- */

static double clock_seconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + now.tv_nsec * 1e-9;
}

static void set_status(const char *status, const char *reason, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(stats.detail, sizeof stats.detail, format, args);
    va_end(args);
    stats.status = status;
    stats.reason = reason;
}

/* Caller holds the lock. */
static void write_state_locked(void) {
    int error = bw_state_write(config.state_dir, config.file_name, &stats);
    if (error && !write_failing)
        log_line("cannot write the state file %s/%s: %s; the process keeps running, unsampled by the exporter",
                 config.state_dir, config.file_name, strerror(error));
    else if (!error && write_failing)
        log_line("state file %s/%s writable again", config.state_dir, config.file_name);
    write_failing = error != 0;
}

static void write_state(void) {
    pthread_mutex_lock(&lock);
    write_state_locked();
    pthread_mutex_unlock(&lock);
}

/* ---- finding libcupti ----------------------------------------------------------------------- */

static int find_loaded_cupti(struct dl_phdr_info *info, size_t size, void *out) {
    (void)size;
    const char *base = strrchr(info->dlpi_name, '/');
    base = base ? base + 1 : info->dlpi_name;
    if (strncmp(base, "libcupti.so", 11) != 0) return 0;
    snprintf(out, 2048, "%s", info->dlpi_name);
    return 1;
}

/* libcupti of the process's Python (pip wheels nvidia-cuda-cupti*), by prefixes a Python would use. */
static void *open_python_cupti(char *tried, size_t tried_size) {
    char prefixes[5][2048] = {{0}};
    const char *virtual_env = getenv("VIRTUAL_ENV"), *conda = getenv("CONDA_PREFIX");
    snprintf(prefixes[0], sizeof prefixes[0], "%s", virtual_env ? virtual_env : "");
    snprintf(prefixes[1], sizeof prefixes[1], "%s", conda ? conda : "");
    ssize_t n = readlink("/proc/self/exe", prefixes[2], sizeof prefixes[2] - 1);
    prefixes[2][n > 0 ? n : 0] = 0;
    for (int up = 0; up < 2; up++) { /* <prefix>/bin/python3 -> <prefix> */
        char *slash = strrchr(prefixes[2], '/');
        if (slash) *slash = 0;
    }
    snprintf(prefixes[3], sizeof prefixes[3], "/usr/local");
    snprintf(prefixes[4], sizeof prefixes[4], "/usr");
    for (int i = 0; i < 5; i++) {
        if (!prefixes[i][0]) continue;
        char pattern[4200];
        snprintf(pattern, sizeof pattern, "%.2000s/lib*/python3*/*-packages/nvidia/{cu13,cuda_cupti}/lib/libcupti.so*",
                 prefixes[i]);
        glob_t found;
        if (glob(pattern, GLOB_BRACE | GLOB_NOSORT, NULL, &found) == 0) {
            for (size_t j = 0; j < found.gl_pathc; j++) {
                void *handle = dlopen(found.gl_pathv[j], RTLD_NOW | RTLD_LOCAL);
                snprintf(tried, tried_size, "%s", found.gl_pathv[j]);
                if (handle) {
                    globfree(&found);
                    return handle;
                }
            }
            globfree(&found);
        }
    }
    return NULL;
}

/* BLACKWELL_DISPATCH_CUPTI, else a libcupti already in the process (never a second CUPTI), else the
 * system's, else Python's. */
static void *open_cupti(char *tried, size_t tried_size) {
    static const char *names[] = {"libcupti.so.13", "libcupti.so.12", "libcupti.so"};
    if (config.cupti_path[0]) {
        snprintf(tried, tried_size, "%s", config.cupti_path);
        return dlopen(config.cupti_path, RTLD_NOW | RTLD_LOCAL);
    }
    char loaded[2048] = {0};
    if (dl_iterate_phdr(find_loaded_cupti, loaded)) {
        snprintf(tried, tried_size, "%s", loaded);
        return dlopen(loaded, RTLD_NOW | RTLD_NOLOAD);
    }
    for (size_t i = 0; i < 3; i++) {
        void *handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (handle) {
            snprintf(tried, tried_size, "%s", names[i]);
            return handle;
        }
    }
    snprintf(tried, tried_size, "libcupti.so.13, libcupti.so.12, libcupti.so");
    return open_python_cupti(tried + strlen(tried), tried_size - strlen(tried));
}

static int bind_cupti(void *handle) {
#define BIND(field, symbol) if (!(*(void **)&api.field = dlsym(handle, symbol))) return 0
    BIND(subscribe, "cuptiSubscribe");
    BIND(unsubscribe, "cuptiUnsubscribe");
    BIND(register_callbacks, "cuptiActivityRegisterCallbacks");
    BIND(enable, "cuptiActivityEnable");
    BIND(disable, "cuptiActivityDisable");
    BIND(flush_all, "cuptiActivityFlushAll");
    BIND(next_record, "cuptiActivityGetNextRecord");
    BIND(dropped, "cuptiActivityGetNumDroppedRecords");
    BIND(result_string, "cuptiGetResultString");
#undef BIND
    *(void **)&api.enable_callback = dlsym(handle, "cuptiEnableCallback");
    *(void **)&api.finalize = dlsym(handle, "cuptiFinalize");
    return 1;
}

static int load_cupti(void) {
    char tried[4096] = {0};
    void *handle = open_cupti(tried, sizeof tried);
    if (!handle) {
        const char *why = dlerror();
        pthread_mutex_lock(&lock);
        set_status("unavailable", "cupti_missing", "no libcupti loadable (tried %s): %s", tried, why ? why : "");
        pthread_mutex_unlock(&lock);
        log_line("not sampling: no libcupti loadable (tried %s); set BLACKWELL_DISPATCH_CUPTI", tried);
        return 0;
    }
    if (!bind_cupti(handle)) {
        pthread_mutex_lock(&lock);
        set_status("unavailable", "cupti_incompatible", "%s lacks a CUPTI activity function", tried);
        pthread_mutex_unlock(&lock);
        log_line("not sampling: %s lacks a CUPTI activity function", tried);
        return 0;
    }
    return 1;
}

/* ---- GPU labels: NVML index of the device's UUID, else the CUDA ordinal ---------------------- */

static void uuid_text(const unsigned char *bytes, char *out, size_t size) {
    snprintf(out, size, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
             bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10],
             bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
}

static void resolve_labels(void) {
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!cuda) return;
    CUresult (*init)(unsigned) = (CUresult(*)(unsigned))dlsym(cuda, "cuInit");
    CUresult (*count)(int *) = (CUresult(*)(int *))dlsym(cuda, "cuDeviceGetCount");
    CUresult (*get)(CUdevice *, int) = (CUresult(*)(CUdevice *, int))dlsym(cuda, "cuDeviceGet");
    CUresult (*uuid)(CUuuid *, CUdevice) = (CUresult(*)(CUuuid *, CUdevice))dlsym(cuda, "cuDeviceGetUuid_v2");
    if (!uuid) uuid = (CUresult(*)(CUuuid *, CUdevice))dlsym(cuda, "cuDeviceGetUuid");
    int devices = 0;
    if (!init || !count || !get || !uuid || init(0) != CUDA_SUCCESS || count(&devices) != CUDA_SUCCESS) return;
    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    int (*nvml_init)(void) = nvml ? (int (*)(void))dlsym(nvml, "nvmlInit_v2") : NULL;
    int (*by_uuid)(const char *, void **) = nvml ? (int (*)(const char *, void **))dlsym(nvml, "nvmlDeviceGetHandleByUUID") : NULL;
    int (*index_of)(void *, unsigned *) = nvml ? (int (*)(void *, unsigned *))dlsym(nvml, "nvmlDeviceGetIndex") : NULL;
    int (*nvml_shutdown)(void) = nvml ? (int (*)(void))dlsym(nvml, "nvmlShutdown") : NULL;
    int nvml_ok = nvml_init && by_uuid && index_of && nvml_init() == 0;
    for (int ordinal = 0; ordinal < devices && ordinal < BW_MAX_GPUS; ordinal++) {
        CUdevice device;
        CUuuid raw;
        char text[48] = "", label[32];
        snprintf(label, sizeof label, "%d", ordinal);
        if (get(&device, ordinal) == CUDA_SUCCESS && uuid(&raw, device) == CUDA_SUCCESS)
            uuid_text((const unsigned char *)raw.bytes, text, sizeof text);
        void *handle = NULL;
        unsigned index = 0;
        if (nvml_ok && text[0] && by_uuid(text, &handle) == 0 && index_of(handle, &index) == 0)
            snprintf(label, sizeof label, "%u", index);
        pthread_mutex_lock(&lock);
        bw_table_set_label((uint32_t)ordinal, label, text);
        pthread_mutex_unlock(&lock);
    }
    if (nvml_ok && nvml_shutdown) nvml_shutdown();
}

/* ---- activity buffers ----------------------------------------------------------------------- */

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *max_records = 0;
    *buffer = NULL;
    *size = 0;
    if (atomic_fetch_add(&outstanding_buffers, 1) >= MAX_BUFFERS) {
        atomic_fetch_sub(&outstanding_buffers, 1); /* bounded: CUPTI drops and counts the records */
        return;
    }
    void *memory = NULL;
    if (posix_memalign(&memory, 8, BUFFER_BYTES) != 0) {
        atomic_fetch_sub(&outstanding_buffers, 1);
        return;
    }
    *buffer = memory;
    *size = BUFFER_BYTES;
}

static void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
    (void)context, (void)stream, (void)size;
    if (getpid() == owner_pid && buffer) {
        CUpti_Activity *record = NULL;
        pthread_mutex_lock(&lock);
        while (api.next_record(buffer, valid, &record) == CUPTI_SUCCESS) {
            const uint8_t *raw = (const uint8_t *)record;
            uint32_t kind, device;
            uint64_t start, end;
            const char *name;
            memcpy(&kind, raw + BW_OFFSET_KIND, sizeof kind);
            if (kind != BW_KIND_CONCURRENT_KERNEL) continue;
            memcpy(&start, raw + BW_OFFSET_START, sizeof start);
            memcpy(&end, raw + BW_OFFSET_END, sizeof end);
            memcpy(&device, raw + BW_OFFSET_DEVICE, sizeof device);
            memcpy(&name, raw + BW_OFFSET_NAME, sizeof name);
            stats.records++;
            if (!bw_table_add(device, name, start, end)) stats.incomplete_records++;
        }
        pthread_mutex_unlock(&lock);
    }
    free(buffer);
    if (buffer) atomic_fetch_sub(&outstanding_buffers, 1);
}

/* ---- detaching at a window's end ------------------------------------------------------------
 * CUPTI left attached after a window (activity disabled, subscriber gone) still slows every launch
 * (4.0 -> 5.0 us per launch on an H200: bench/results/inject_h200.md; torch.profiler tears CUPTI
 * down after a session for the same reason), so a window ends by detaching it: the window thread
 * asks, and the next CUDA runtime call in BW_DETACH_SITES to return in the application disables the
 * kernel activity, flushes the last records and calls cuptiFinalize (which flushes nothing), at that
 * call's exit (the call site of NVIDIA's
 * cupti_finalize sample and Kineto's teardown). Both happen there, with no launch between them:
 * work launched or captured into a graph after the activity was disabled but before CUPTI was
 * finalized failed with "unspecified launch failure" on the H200, and so did a finalize at a
 * launch's exit (inject.h); a driver call's exit may be nested inside a runtime call still running.
 * The window thread waits at most DETACH_WAIT_NS for such a call (serving loops synchronize every
 * step); in a process that makes none it takes the request back and ends the window as
 * BLACKWELL_DISPATCH_DETACH=0 always does: activity disabled, CUPTI left attached. So no request
 * outlives its window by more than that, and a CUPTI client starting later (Nsight,
 * torch.profiler) is never finalized under. The next window's cuptiSubscribe attaches CUPTI again. */
enum { DETACH_NONE, DETACH_PENDING, DETACH_RUNNING };
#define DETACH_WAIT_NS 100000000L
static atomic_int detach_state;
static const CUpti_CallbackId detach_sites[] = BW_DETACH_SITES;
#define DETACH_SITE_COUNT (sizeof detach_sites / sizeof *detach_sites)
static double detached_at; /* set by the application thread that detached (0: none did), read after DETACH_NONE */
static size_t detach_dropped;

static void CUPTIAPI detach_callback(void *data, CUpti_CallbackDomain domain, CUpti_CallbackId id, const void *info) {
    (void)data, (void)id; /* only the sites' callbacks are enabled, and only while a detach is asked for */
    if (domain != CUPTI_CB_DOMAIN_RUNTIME_API || ((const CUpti_CallbackData *)info)->callbackSite != CUPTI_API_EXIT ||
        getpid() != owner_pid) /* a fork()ed child: the window is its parent's */
        return;
    int expected = DETACH_PENDING;
    if (!atomic_compare_exchange_strong(&detach_state, &expected, DETACH_RUNNING)) return;
    api.disable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    detached_at = clock_seconds(CLOCK_MONOTONIC);
    api.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED); /* the window's last records, through buffer_completed */
    if (api.dropped(NULL, 0, &detach_dropped) != CUPTI_SUCCESS) detach_dropped = 0;
    api.finalize(); /* which flushes nothing itself */
    atomic_store(&detach_state, DETACH_NONE);
}

static void enable_sites(CUpti_SubscriberHandle subscriber, uint32_t enable) {
    for (size_t i = 0; i < DETACH_SITE_COUNT; i++)
        api.enable_callback(enable, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API, detach_sites[i]);
}

/* Ends the window by detaching at the application's next detach site: 1 when it did (the window's
 * records are in, *ended and *dropped set), 0 when the request was taken back (still attached,
 * activity still enabled). */
static int detach_at_next_site(CUpti_SubscriberHandle subscriber, double *ended, size_t *dropped) {
    if (!config.detach || !api.finalize || !api.enable_callback) return 0;
    detached_at = 0;
    api.flush_all(0); /* the buffers complete so far, here, so that the application's thread flushes only the rest */
    atomic_store(&detach_state, DETACH_PENDING); /* before any callback can fire */
    enable_sites(subscriber, 1);
    for (long waited = 0; waited < DETACH_WAIT_NS && atomic_load(&detach_state) != DETACH_NONE; waited += 1000000) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    int expected = DETACH_PENDING;
    if (atomic_compare_exchange_strong(&detach_state, &expected, DETACH_NONE)) {
        enable_sites(subscriber, 0);
        return 0;
    }
    while (atomic_load(&detach_state) != DETACH_NONE) sched_yield(); /* a detach running in an application thread */
    if (detached_at == 0) { /* taken back by the process's exit */
        enable_sites(subscriber, 0);
        return 0;
    }
    *ended = detached_at;
    *dropped = detach_dropped;
    return 1;
}

/* ---- windows -------------------------------------------------------------------------------- */

/* Sleeps up to seconds on the monotonic clock; returns 1 as soon as the process is stopping. */
static int wait_or_stop(double seconds) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + (long long)(seconds * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&lock);
    while (!atomic_load(&stopping))
        if (pthread_cond_timedwait(&wake, &lock, &until) == ETIMEDOUT) break;
    int stop = atomic_load(&stopping);
    pthread_mutex_unlock(&lock);
    return stop;
}

static const char *reason_for(CUptiResult result) {
    if (result == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) return "multiple_subscribers";
    if (result == CUPTI_ERROR_NOT_COMPATIBLE || result == CUPTI_ERROR_NOT_INITIALIZED ||
        result == CUPTI_ERROR_CUDA_COMPILER_NOT_COMPATIBLE)
        return "cupti_incompatible";
    return "cupti_error";
}

/* A window could not open: count it as skipped; one stderr line when the reason changes. */
static void window_refused(const char *call, CUptiResult result) {
    const char *text = NULL;
    if (api.result_string(result, &text) != CUPTI_SUCCESS || !text) text = "unknown CUPTI error";
    const char *reason = reason_for(result);
    pthread_mutex_lock(&lock);
    int changed = strcmp(stats.reason, reason) != 0;
    stats.windows_skipped++;
    set_status(stats.windows ? "paused" : "unavailable", reason, "%s: %s (%d)", call, text, (int)result);
    pthread_mutex_unlock(&lock);
    if (changed)
        log_line("window skipped, %s: %s returned %s; the application is not affected, retrying each period", reason,
                 call, text);
}

static int open_window(CUpti_SubscriberHandle *subscriber) {
    CUptiResult result = api.subscribe(subscriber, detach_callback, NULL);
    if (result != CUPTI_SUCCESS) {
        window_refused("cuptiSubscribe", result);
        return 0;
    }
    const char *call = "cuptiActivityRegisterCallbacks";
    result = api.register_callbacks(buffer_requested, buffer_completed);
    if (result == CUPTI_SUCCESS) {
        call = "cuptiActivityEnable";
        result = api.enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    }
    if (result != CUPTI_SUCCESS) {
        api.unsubscribe(*subscriber);
        window_refused(call, result);
        return 0;
    }
    return 1;
}

static void close_window(CUpti_SubscriberHandle subscriber, double began, int stopping_now) {
    double ended = 0;
    size_t dropped = 0;
    int detached = !stopping_now && detach_at_next_site(subscriber, &ended, &dropped);
    if (!detached) {
        api.disable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
        ended = clock_seconds(CLOCK_MONOTONIC);
        if (!stopping_now) { /* kernels launched at the end of the window finish a little later */
            struct timespec pause = {0, SETTLE_NS};
            nanosleep(&pause, NULL);
        }
        api.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
        if (api.dropped(NULL, 0, &dropped) != CUPTI_SUCCESS) dropped = 0;
        api.unsubscribe(subscriber);
    }
    pthread_mutex_lock(&lock);
    int resumed = strcmp(stats.status, "sampling") != 0;
    stats.windows++;
    stats.detaches += (uint64_t)detached;
    stats.sampled_seconds += ended - began;
    stats.dropped_records += dropped;
    set_status("sampling", "", "");
    pthread_mutex_unlock(&lock);
    if (resumed) log_line("sampling: %.3g s windows every %.3g s into %s/%s", config.duty * config.period,
                          config.period, config.state_dir, config.file_name);
}

static void *sampler_main(void *unused) {
    (void)unused;
    unsigned seed = (unsigned)owner_pid ^ (unsigned)time(NULL);
    double window = config.duty * config.period;
    int labelled = 0;
    /* BLACKWELL_DISPATCH_START_DELAY: the first window opens that long after CUDA initialized (model
     * loading, warm-up and CUDA-graph capture unsampled); later ones each period, at random phase. */
    int first = config.start_delay > 0;
    while (1) {
        double idle = first ? config.start_delay : (config.period - window) * (0.5 + rand_r(&seed) / (double)RAND_MAX);
        first = 0;
        if (wait_or_stop(idle > 0 ? idle : 0)) break;
        if (api.subscribe && window > 0) {
            if (!labelled) resolve_labels();
            labelled = 1;
            CUpti_SubscriberHandle subscriber;
            if (open_window(&subscriber)) {
                double began = clock_seconds(CLOCK_MONOTONIC);
                int stop = wait_or_stop(window);
                close_window(subscriber, began, stop);
                if (stop) {
                    log_line("process exiting during a window: window closed and its records flushed");
                    break;
                }
            }
        }
        write_state();
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void finish(void) {
    if (!atomic_load(&initialized) || getpid() != owner_pid || atomic_exchange(&finished, 1)) return;
    pthread_mutex_lock(&lock);
    atomic_store(&stopping, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    struct timespec until;
    if (atomic_load(&thread_started)) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += EXIT_JOIN_SECONDS;
        if (pthread_timedjoin_np(sampler_thread, NULL, &until) != 0)
            log_line("sampler thread did not stop within %d s; writing the final state without it", EXIT_JOIN_SECONDS);
    }
    int pending = DETACH_PENDING; /* no cuptiFinalize from a CUDA call made during the exit */
    atomic_compare_exchange_strong(&detach_state, &pending, DETACH_NONE);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    if (pthread_mutex_timedlock(&lock, &until) != 0) return; /* never stall the exit */
    set_status("exited", "exited", "process exited after %llu windows", (unsigned long long)stats.windows);
    write_state_locked();
    pthread_mutex_unlock(&lock);
}

__attribute__((destructor)) static void unloading(void) { finish(); }

static void forked_child(void) {
    static const char line[] = "blackwell-inject: forked child: not sampled and never writes the parent's state "
                               "file (a child that calls exec starts its own sampler)\n";
    ssize_t ignored = write(STDERR_FILENO, line, sizeof line - 1);
    (void)ignored;
}

/* __cxa_demangle of the libstdc++ the process already has (C++ runtimes and Python with torch do);
 * looked up again until found, since a C++ library may be loaded after cuInit. */
static char *demangle(const char *mangled, char *out, size_t *length, int *status) {
    static char *(*cxa_demangle)(const char *, char *, size_t *, int *);
    if (!cxa_demangle) *(void **)&cxa_demangle = dlsym(RTLD_DEFAULT, "__cxa_demangle");
    if (!cxa_demangle) {
        *status = -1;
        return NULL;
    }
    return cxa_demangle(mangled, out, length, status);
}

static void start_thread(void) {
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous); /* the application's signals never land on our thread */
    int error = pthread_create(&sampler_thread, NULL, sampler_main, NULL);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (!error) {
        atomic_store(&thread_started, 1);
        return;
    }
    pthread_mutex_lock(&lock);
    set_status("unavailable", "cupti_error", "cannot start the sampler thread: %s", strerror(error));
    write_state_locked();
    pthread_mutex_unlock(&lock);
    log_line("not sampling: cannot start the sampler thread: %s", strerror(error));
}

__attribute__((visibility("default"))) int InitializeInjection(void) {
    if (atomic_exchange(&initialized, 1)) return 1;
    owner_pid = getpid();
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &attributes);
    read_settings();
    bw_table_init(config.max_names, demangle);
    stats = (bw_stats){.status = "sampling", .reason = "", .duty_cycle = config.duty,
                       .period_seconds = config.period, .started_at = clock_seconds(CLOCK_REALTIME),
                       .max_names = config.max_names, .pid = owner_pid, .process = config.process};
    if (config.duty <= 0) {
        set_status("unavailable", "disabled", "BLACKWELL_DISPATCH_DUTY_CYCLE is 0");
        log_line("not sampling: BLACKWELL_DISPATCH_DUTY_CYCLE is 0");
    } else if (!load_cupti()) {
        memset(&api, 0, sizeof api);
    }
    pthread_atfork(NULL, NULL, forked_child);
    atexit(finish);
    write_state();
    start_thread();
    return 1;
}
