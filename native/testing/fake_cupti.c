/* A stand-in libcupti for the tests on machines without a GPU (tests/unit/test_inject_native.py).
 *
 * Implements the eleven CUPTI functions the injection library binds, with CUPTI's behaviour where
 * the library depends on it: one subscriber per process (a second cuptiSubscribe returns
 * CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED), callbacks of an enabled domain delivered to the
 * subscriber's function, cuptiFinalize destroying the subscriber and the activity callbacks (a
 * finalized CUPTI initializes again on the next call), records only while the kernel kind is enabled,
 * buffers requested from and handed back to the client, records without a buffer dropped and
 * counted, cuptiActivityGetNextRecord ending with CUPTI_ERROR_MAX_LIMIT_REACHED. Record layout:
 * the fields the library reads, at the CUpti_ActivityKernel10 offsets (native/inject.h).
 *
 * Driven by the environment: FAKE_CUPTI_NAMES is a file of NUL-separated kernel names, each
 * delivered once per window on device FAKE_CUPTI_DEVICE (default 0), lasting 100 ns; names
 * starting with "!" arrive without an end time. FAKE_CUPTI_OTHER_SUBSCRIBER=1 makes every
 * cuptiSubscribe fail as when Nsight or torch.profiler holds CUPTI. The host stands in for the CUDA
 * runtime and driver with fake_runtime_call() and fake_driver_call() (entry and exit callbacks of
 * that API domain, when enabled) and reads fake_finalize_count(). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_BYTES 216
typedef void (*requested_fn)(uint8_t **, size_t *, size_t *);
typedef void (*completed_fn)(void *, uint32_t, uint8_t *, size_t, size_t);
typedef void (*callback_fn)(void *, int, unsigned, const void *);
enum { DRIVER_API_DOMAIN = 1, RUNTIME_API_DOMAIN = 2, API_ENTER = 0, API_EXIT = 1 };
typedef struct { int callbackSite; } callback_data; /* CUpti_CallbackData starts with callbackSite */

static requested_fn on_requested;
static completed_fn on_completed;
static callback_fn on_callback;
static void *callback_userdata;
enum { MAX_CALLBACK_ID = 1024 };
static unsigned char callbacks[7][MAX_CALLBACK_ID]; /* [domain][callback id]: enabled for the subscriber */
static int subscribed, enabled, window_had_kernels, finalized;
static size_t dropped;

int cuptiSubscribe(void **subscriber, void *callback, void *data) {
    const char *other = getenv("FAKE_CUPTI_OTHER_SUBSCRIBER");
    if (subscribed || (other && other[0] == '1')) return 39;
    on_callback = (callback_fn)callback;
    callback_userdata = data;
    subscribed = 1;
    *subscriber = &subscribed;
    return 0;
}

int cuptiUnsubscribe(void *subscriber) {
    if (subscriber != &subscribed || !subscribed) return 1;
    subscribed = 0;
    memset(callbacks, 0, sizeof callbacks);
    return 0;
}

int cuptiEnableCallback(uint32_t enable, void *subscriber, int domain, unsigned id) {
    if (subscriber != &subscribed || !subscribed) return 1;
    if (domain < 1 || domain > 6 || id >= MAX_CALLBACK_ID) return 1; /* CUPTI_ERROR_INVALID_PARAMETER */
    callbacks[domain][id] = enable != 0;
    return 0;
}

/* As CUPTI's: every subscription and activity ends; records not flushed before are lost. */
int cuptiFinalize(void) {
    subscribed = enabled = window_had_kernels = 0;
    memset(callbacks, 0, sizeof callbacks);
    on_requested = NULL;
    on_completed = NULL;
    finalized++;
    return 0;
}

int fake_finalize_count(void) { return finalized; }

/* Launches (cudaLaunchKernel, cudaGraphLaunch) the host made while subscribed with the kernel activity
 * disabled: the state in which a later cuptiFinalize broke launched work on a real GPU. */
static int launches_disabled;
int fake_launches_while_disabled(void) { return launches_disabled; }

/* One API call in the host (its callback id: cupti_driver_cbid.h / cupti_runtime_cbid.h): CUPTI calls
 * the subscriber at its entry and exit. */
static void api_call(int domain, unsigned id) {
    if (domain == RUNTIME_API_DOMAIN && (id == 211 || id == 311) && subscribed && !enabled) launches_disabled++;
    for (int site = API_ENTER; site <= API_EXIT; site++) {
        callback_data data = {site};
        if (subscribed && id < MAX_CALLBACK_ID && callbacks[domain][id] && on_callback)
            on_callback(callback_userdata, domain, id, &data);
    }
}

void fake_driver_call(unsigned id) { api_call(DRIVER_API_DOMAIN, id); }
void fake_runtime_call(unsigned id) { api_call(RUNTIME_API_DOMAIN, id); }

int cuptiActivityRegisterCallbacks(requested_fn requested, completed_fn completed) {
    if (!requested || !completed) return 1;
    on_requested = requested;
    on_completed = completed;
    return 0;
}

int cuptiActivityEnable(int kind) {
    if (kind != 10) return 1;
    enabled = window_had_kernels = 1;
    return 0;
}

int cuptiActivityDisable(int kind) {
    if (kind != 10) return 1;
    enabled = 0;
    return 0;
}

static void put_record(uint8_t *at, const char *name, uint32_t device) {
    uint32_t kind = 10;
    uint64_t start = 1000000, end = name[0] == '!' ? 0 : start + 100;
    memset(at, 0, RECORD_BYTES);
    memcpy(at + 0, &kind, 4);
    memcpy(at + 16, &start, 8);
    memcpy(at + 24, &end, 8);
    memcpy(at + 40, &device, 4);
    memcpy(at + 104, &name, sizeof name);
}

static char *load_names(size_t *length) {
    const char *path = getenv("FAKE_CUPTI_NAMES");
    FILE *file = path ? fopen(path, "rb") : NULL;
    if (!file) return NULL;
    static char *names;
    static size_t size;
    if (!names) {
        fseek(file, 0, SEEK_END);
        size = (size_t)ftell(file);
        fseek(file, 0, SEEK_SET);
        names = calloc(size + 1, 1);
        if (names && fread(names, 1, size, file) != size) size = 0;
    }
    fclose(file);
    *length = size;
    return names;
}

/* Delivers this window's records through the client's buffers. */
int cuptiActivityFlushAll(uint32_t flag) {
    (void)flag;
    size_t length = 0;
    char *names = load_names(&length);
    const char *device_text = getenv("FAKE_CUPTI_DEVICE");
    uint32_t device = device_text ? (uint32_t)atoi(device_text) : 0;
    if (!window_had_kernels || !names || !on_requested) return 0;
    window_had_kernels = 0;
    char *next = names, *end = names + length;
    while (next < end) {
        uint8_t *buffer = NULL;
        size_t size = 0, max_records = 0, used = 0;
        on_requested(&buffer, &size, &max_records);
        if (!buffer) {
            for (; next < end; next += strlen(next) + 1) dropped++;
            break;
        }
        for (; next < end && used + RECORD_BYTES <= size; next += strlen(next) + 1, used += RECORD_BYTES)
            put_record(buffer + used, next, device);
        on_completed(NULL, 0, buffer, size, used);
    }
    return 0;
}

int cuptiActivityGetNextRecord(uint8_t *buffer, size_t valid, void **record) {
    uint8_t *next = *record ? (uint8_t *)*record + RECORD_BYTES : buffer;
    if (next + RECORD_BYTES > buffer + valid) return 12; /* CUPTI_ERROR_MAX_LIMIT_REACHED */
    *record = next;
    return 0;
}

int cuptiActivityGetNumDroppedRecords(void *context, uint32_t stream, size_t *count) {
    (void)context, (void)stream;
    *count = dropped;
    dropped = 0;
    return 0;
}

int cuptiGetResultString(int result, const char **text) {
    *text = result == 39 ? "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED" : result == 0 ? "CUPTI_SUCCESS" : "CUPTI_ERROR_UNKNOWN";
    return 0;
}
