/* Bounded per-GPU kernel name table and the writers of the atomic JSON state file and of the
 * append-only names files beside it. Callers hold the library's lock; nothing here is thread-safe
 * on its own. */
#define _GNU_SOURCE
#include "inject.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef BLACKWELL_VERSION
#define BLACKWELL_VERSION "unknown"
#endif

static bw_gpu gpus[BW_MAX_GPUS];
static size_t table_max_names = 2048;
static bw_demangler table_demangle;

void bw_table_init(size_t max_names, bw_demangler demangle) {
    table_max_names = max_names;
    table_demangle = demangle;
}

static uint64_t fnv1a(const char *text) {
    uint64_t hash = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) hash = (hash ^ *p) * 1099511628211ULL;
    return hash;
}

static bw_gpu *gpu_for(uint32_t device) {
    bw_gpu *gpu = &gpus[device % BW_MAX_GPUS];
    if (gpu->seen) return gpu;
    size_t capacity = 16;
    while (capacity < 2 * table_max_names) capacity *= 2;
    gpu->slots = calloc(capacity, sizeof(bw_entry));
    gpu->order = calloc(table_max_names, sizeof(size_t));
    if (!gpu->slots || !gpu->order) {
        free(gpu->slots);
        free(gpu->order);
        gpu->slots = NULL;
        gpu->order = NULL;
        capacity = 0; /* out of memory: every name goes to the overflow bucket */
    }
    gpu->capacity = capacity;
    gpu->seen = 1;
    if (!gpu->label[0]) snprintf(gpu->label, sizeof gpu->label, "%u", device);
    return gpu;
}

static char *demangled_copy(const char *raw) {
    if (table_demangle && raw[0] == '_' && raw[1] == 'Z') {
        int status = -1;
        char *text = table_demangle(raw, NULL, NULL, &status);
        if (status == 0 && text) return text; /* malloc'd by __cxa_demangle */
        free(text);
    }
    return strdup(raw);
}

/* The slot holding name, or the empty slot where it belongs; NULL when the table is full. */
static bw_entry *lookup(bw_gpu *gpu, const char *name, uint64_t hash, size_t *slot_index) {
    if (!gpu->capacity) return NULL;
    size_t mask = gpu->capacity - 1;
    for (size_t i = hash & mask, probes = 0; probes < gpu->capacity; i = (i + 1) & mask, probes++) {
        bw_entry *entry = &gpu->slots[i];
        if (!entry->raw || (entry->hash == hash && strcmp(entry->raw, name) == 0)) {
            *slot_index = i;
            return entry;
        }
    }
    return NULL;
}

int bw_table_add(uint32_t device, const char *name, uint64_t start, uint64_t end) {
    if (end <= start) return 0;
    bw_gpu *gpu = gpu_for(device);
    uint64_t ns = end - start;
    gpu->kernels++;
    gpu->kernel_ns += ns;
    if (!name) name = "";
    uint64_t hash = fnv1a(name);
    size_t slot = 0;
    bw_entry *entry = lookup(gpu, name, hash, &slot);
    if (entry && !entry->raw && gpu->count < table_max_names) {
        entry->raw = strdup(name);
        entry->demangled = entry->raw ? demangled_copy(name) : NULL;
        if (!entry->raw || !entry->demangled) {
            free(entry->raw);
            entry->raw = NULL;
            entry = NULL;
        } else {
            entry->hash = hash;
            gpu->order[gpu->count++] = slot;
        }
    }
    if (!entry || !entry->raw) {
        gpu->overflow_launches++;
        gpu->overflow_ns += ns;
        return 1;
    }
    entry->launches++;
    entry->ns += ns;
    return 1;
}

void bw_table_set_label(uint32_t device, const char *label, const char *uuid) {
    bw_gpu *gpu = &gpus[device % BW_MAX_GPUS];
    snprintf(gpu->label, sizeof gpu->label, "%s", label);
    snprintf(gpu->uuid, sizeof gpu->uuid, "%s", uuid);
}

int bw_table_has_label(uint32_t device) { return gpus[device % BW_MAX_GPUS].label[0] != 0; }

/* A growing output buffer; on allocation failure it stops growing and marks itself failed. */
typedef struct out_buffer {
    char *data;
    size_t length, capacity;
    int failed;
} out_buffer;

static void put(out_buffer *out, const char *bytes, size_t length) {
    if (out->failed) return;
    if (out->length + length + 1 > out->capacity) {
        size_t capacity = out->capacity ? out->capacity : 4096;
        while (out->length + length + 1 > capacity) capacity *= 2;
        char *grown = realloc(out->data, capacity);
        if (!grown) {
            out->failed = 1;
            return;
        }
        out->data = grown;
        out->capacity = capacity;
    }
    memcpy(out->data + out->length, bytes, length);
    out->length += length;
    out->data[out->length] = 0;
}

#define put_literal(out, text) put((out), (text), sizeof(text) - 1)

static void putf(out_buffer *out, const char *format, ...) {
    char text[256];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (n > 0) put(out, text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

/* Length of the valid UTF-8 sequence at p, or 0 if the bytes there are not one. */
static size_t utf8_length(const unsigned char *p) {
    size_t need = p[0] < 0x80 ? 1 : (p[0] >> 5) == 6 ? 2 : (p[0] >> 4) == 14 ? 3 : (p[0] >> 3) == 30 ? 4 : 0;
    if (need == 0 || (need == 2 && p[0] < 0xC2)) return 0;
    for (size_t i = 1; i < need; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return need;
}

/* A JSON string: quotes, backslashes and control characters escaped; bytes that are not UTF-8
 * become U+FFFD, so the file is always valid UTF-8 JSON. */
static void put_string(out_buffer *out, const char *text) {
    put_literal(out, "\"");
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p;) {
        if (*p == '"' || *p == '\\') {
            char escaped[2] = {'\\', (char)*p++};
            put(out, escaped, 2);
        } else if (*p < 0x20) {
            putf(out, "\\u%04x", *p++);
        } else {
            size_t n = utf8_length(p);
            if (n == 0) {
                put_literal(out, "\\ufffd");
                p++;
            } else {
                put(out, (const char *)p, n);
                p += n;
            }
        }
    }
    put_literal(out, "\"");
}

static void put_gpu(out_buffer *out, const bw_gpu *gpu) {
    put_string(out, gpu->label);
    put_literal(out, ":{\"uuid\":");
    put_string(out, gpu->uuid);
    putf(out, ",\"kernels\":%llu,\"kernel_ns\":%llu,\"names_file\":", (unsigned long long)gpu->kernels,
         (unsigned long long)gpu->kernel_ns);
    /* version 4: the names are in the names file (each line one name, in the order first seen); the
     * counts of the names written there, in that order */
    put_string(out, gpu->names_file);
    putf(out, ",\"names_listed\":%zu,\"names_bytes\":%llu,\"counts\":[", gpu->names_written,
         (unsigned long long)gpu->names_bytes);
    for (size_t i = 0; i < gpu->names_written; i++) {
        const bw_entry *entry = &gpu->slots[gpu->order[i]];
        putf(out, i ? ",%llu,%llu" : "%llu,%llu", (unsigned long long)entry->launches, (unsigned long long)entry->ns);
    }
    putf(out, "],\"overflow\":[%llu,%llu]}", (unsigned long long)gpu->overflow_launches,
         (unsigned long long)gpu->overflow_ns);
}

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (double)now.tv_sec + now.tv_nsec * 1e-9;
}

static void put_header(out_buffer *out, const bw_stats *stats) {
    put_literal(out, "{\"format\":\"blackwell-exporter/dispatch-state\",\"version\":4,\"writer\":\"inject\",\"writer_version\":");
    put_string(out, BLACKWELL_VERSION);
    putf(out, ",\"pid\":%d,\"process\":", stats->pid);
    put_string(out, stats->process);
    putf(out, ",\"started_at\":%.6f,\"updated_at\":%.6f,\"status\":", stats->started_at, now_seconds());
    put_string(out, stats->status);
    put_literal(out, ",\"reason\":");
    put_string(out, stats->reason);
    put_literal(out, ",\"detail\":");
    put_string(out, stats->detail);
    putf(out, ",\"duty_cycle\":%.6g,\"period_seconds\":%.6g,\"windows\":%llu,\"windows_skipped\":%llu",
         stats->duty_cycle, stats->period_seconds, (unsigned long long)stats->windows,
         (unsigned long long)stats->windows_skipped);
    putf(out, ",\"sampled_seconds\":%.6f,\"records\":%llu,\"incomplete_records\":%llu", stats->sampled_seconds,
         (unsigned long long)stats->records, (unsigned long long)stats->incomplete_records);
    putf(out, ",\"dropped_records\":%llu,\"detaches\":%llu,\"max_names\":%zu,\"gpus\":{",
         (unsigned long long)stats->dropped_records, (unsigned long long)stats->detaches, stats->max_names);
}

static int write_all(int fd, const char *data, size_t length) {
    while (length) {
        ssize_t n = write(fd, data, length);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return errno ? errno : EIO;
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

/* mkdir -p; errors show up when the temporary file cannot be created. */
static void make_directories(const char *directory) {
    char path[4096];
    snprintf(path, sizeof path, "%s", directory);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(path, 0777);
        *p = '/';
    }
    mkdir(path, 0777);
}

/* Appends the names of gpu not written yet to its names file (named at its first write:
 * .<state file stem>.<label>.<pid>-<ns>.names), then fsyncs it; 0 or an errno value. Written at
 * names_bytes, and cut there after, so an append that failed halfway is overwritten by the next.
 * A names file that is gone or shorter than written is started again under a new name. */
static int append_names(const char *directory, const char *file_name, bw_gpu *gpu) {
    char path[4096];
    struct stat file;
    snprintf(path, sizeof path, "%s/%s", directory, gpu->names_file);
    if (gpu->names_file[0] && (stat(path, &file) != 0 || (uint64_t)file.st_size < gpu->names_bytes)) {
        /* removed (by an exporter that took this process for gone while it was stopped): start a new one */
        gpu->names_file[0] = 0;
        gpu->names_written = 0;
        gpu->names_bytes = 0;
    }
    if (gpu->names_file[0] && gpu->names_written == gpu->count) return 0;
    if (!gpu->names_file[0]) {
        char label[sizeof gpu->label];
        size_t i = 0;
        for (; gpu->label[i] && i + 1 < sizeof label; i++) {
            char c = gpu->label[i];
            label[i] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ? c : '_';
        }
        label[i] = 0;
        size_t stem = strlen(file_name);
        if (stem > 5 && strcmp(file_name + stem - 5, ".json") == 0) stem -= 5;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(gpu->names_file, sizeof gpu->names_file, ".%.*s.%s.%d-%llx.names", (int)stem, file_name, label,
                 (int)getpid(), (unsigned long long)now.tv_sec * 1000000000ULL + (unsigned long long)now.tv_nsec);
    }
    out_buffer out = {0};
    for (size_t i = gpu->names_written; i < gpu->count; i++) {
        put_string(&out, gpu->slots[gpu->order[i]].demangled);
        put_literal(&out, "\n");
    }
    if (out.failed) {
        free(out.data);
        return ENOMEM;
    }
    snprintf(path, sizeof path, "%s/%s", directory, gpu->names_file);
    make_directories(directory);
    int error = 0, fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(out.data);
        return errno;
    }
    fchmod(fd, 0644);
    for (size_t done = 0; done < out.length && !error;) {
        ssize_t n = pwrite(fd, out.data + done, out.length - done, (off_t)(gpu->names_bytes + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) error = errno ? errno : EIO;
        else done += (size_t)n;
    }
    if (!error && ftruncate(fd, (off_t)(gpu->names_bytes + out.length)) != 0) error = errno;
    if (!error && fsync(fd) != 0) error = errno;
    if (close(fd) != 0 && !error) error = errno;
    if (!error) {
        gpu->names_written = gpu->count;
        gpu->names_bytes += out.length;
    }
    free(out.data);
    return error;
}

static int replace_file(const char *directory, const char *file_name, const out_buffer *out) {
    char tmp[4096], path[4096];
    snprintf(path, sizeof path, "%s/%s", directory, file_name);
    snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX.tmp", directory, file_name);
    make_directories(directory);
    int fd = mkostemps(tmp, 4, O_CLOEXEC);
    if (fd < 0) return errno;
    fchmod(fd, 0644);
    int error = write_all(fd, out->data, out->length);
    if (!error && fsync(fd) != 0) error = errno;
    if (close(fd) != 0 && !error) error = errno;
    if (!error && rename(tmp, path) != 0) error = errno;
    if (error) unlink(tmp);
    return error;
}

int bw_state_write(const char *directory, const char *file_name, const bw_stats *stats) {
    int names_error = 0;
    for (size_t i = 0; i < BW_MAX_GPUS; i++) {
        int error = gpus[i].seen ? append_names(directory, file_name, &gpus[i]) : 0;
        if (!names_error) names_error = error;
    }
    out_buffer out = {0};
    put_header(&out, stats);
    int first = 1;
    for (size_t i = 0; i < BW_MAX_GPUS; i++) {
        if (!gpus[i].seen || !gpus[i].names_file[0]) continue;
        if (!first) put_literal(&out, ",");
        first = 0;
        put_gpu(&out, &gpus[i]);
    }
    put_literal(&out, "}}\n");
    int error = out.failed ? ENOMEM : replace_file(directory, file_name, &out);
    free(out.data);
    return error ? error : names_error;
}
