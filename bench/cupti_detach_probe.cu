// What CUPTI costs a launch in each state the injection library can leave it in, and which
// CUDA-graph sequences survive detaching it with cuptiFinalize. Run on the GPU machine by
// bench/inject_device.sh (stage "probe"); each run prints one JSON object.
//
//   cupti_detach_probe cost CYCLES LAUNCHES    ns per kernel launch: never attached, window open,
//                                              window closed but attached, detached (finalized)
//   cupti_detach_probe graph CASE              one CUDA-graph sequence (see cases below); exit 0
//                                              and "ok": true when every replay added what it should
//
// PROBE_DOMAINS=runtime|driver|both|sites: the API exits that may call cuptiFinalize (a driver
// call's exit can be nested inside a runtime call; sites: the library's BW_DETACH_SITES only);
// PROBE_TAKER=self|app: the detach is taken by a cudaGetDevice right after the window, or by
// whatever call the application makes next; PROBE_CHECK=1: the application calls
// cudaGetLastError after each launch, as frameworks do; PROBE_DISABLE=site: the kernel activity
// is disabled in the callback that finalizes (native/inject.c's sequence), not when the window ends.
//
// A window is what native/inject.c does: subscribe, register buffers, enable CONCURRENT_KERNEL;
// closing disables, flushes and unsubscribes. Detaching follows NVIDIA's cupti_finalize sample:
// a subscriber with runtime- and driver-API callbacks calls cuptiFinalize at the next API exit.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cupti.h>

#include "../native/inject.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static std::atomic<long> kernel_records{0};
static std::atomic<long> graph_records{0};
static std::atomic<int> finalize_requested{0};
static CUpti_SubscriberHandle subscriber = nullptr;
static int finalize_in_runtime = 1, finalize_in_driver = 1, only_at_sites = 0, app_takes_detach = 0, check = 0,
           disable_at_site = 0;
static const CUpti_CallbackId sites[] = BW_DETACH_SITES;

static int is_site(CUpti_CallbackId id) {
    for (CUpti_CallbackId site : sites)
        if (site == id) return 1;
    return 0;
}
static std::atomic<long> finalized_in_runtime{0}, finalized_in_driver{0};

#define CHECK_CUPTI(call)                                                                    \
    do {                                                                                     \
        CUptiResult r_ = (call);                                                             \
        if (r_ != CUPTI_SUCCESS) {                                                           \
            const char *s_ = "?";                                                            \
            cuptiGetResultString(r_, &s_);                                                   \
            printf("{\"ok\": false, \"error\": \"%s: %s\"}\n", #call, s_);                   \
            exit(3);                                                                         \
        }                                                                                    \
    } while (0)

static void CUPTIAPI requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *size = 4 << 20;
    *buffer = (uint8_t *)aligned_alloc(8, *size);
    *max_records = 0;
}

static void CUPTIAPI completed(CUcontext, uint32_t, uint8_t *buffer, size_t, size_t valid) {
    CUpti_Activity *record = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
        if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
        kernel_records++;
#if CUPTI_API_VERSION >= 130000
        if (((CUpti_ActivityKernel10 *)record)->graphId) graph_records++;
#else
        if (((CUpti_ActivityKernel9 *)record)->graphId) graph_records++;
#endif
    }
    free(buffer);
}

static void CUPTIAPI on_api(void *, CUpti_CallbackDomain domain, CUpti_CallbackId id, const void *info) {
    int runtime = domain == CUPTI_CB_DOMAIN_RUNTIME_API, driver = domain == CUPTI_CB_DOMAIN_DRIVER_API;
    if (!(runtime && finalize_in_runtime) && !(driver && finalize_in_driver)) return;
    if (only_at_sites && !(runtime && is_site(id))) return;
    if (((const CUpti_CallbackData *)info)->callbackSite != CUPTI_API_EXIT) return;
    int expected = 1;
    if (!finalize_requested.compare_exchange_strong(expected, 2)) return;
    if (disable_at_site) {
        cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
        cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    }
    cuptiUnsubscribe(subscriber);
    cuptiFinalize();
    (runtime ? finalized_in_runtime : finalized_in_driver)++;
    finalize_requested = 0;
}

static long withdrawn = 0;

static void open_window() {
    int expected = 1;  // a detach no call took: withdrawn, as the library does after DETACH_WAIT_NS
    if (finalize_requested.compare_exchange_strong(expected, 0)) {
        cuptiEnableDomain(0, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API);
        cuptiEnableDomain(0, subscriber, CUPTI_CB_DOMAIN_DRIVER_API);
        if (disable_at_site) {  // still enabled: the window ends as the library's withdrawn detach ends it
            cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
            cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
        }
        cuptiUnsubscribe(subscriber);
        withdrawn++;
    }
    CHECK_CUPTI(cuptiSubscribe(&subscriber, on_api, nullptr));
    CHECK_CUPTI(cuptiActivityRegisterCallbacks(requested, completed));
    CHECK_CUPTI(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
}

static void close_window() {  // the shipped library: CUPTI stays attached
    cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    cuptiUnsubscribe(subscriber);
}

static void close_and_detach() {  // disable, flush, then cuptiFinalize at the next API exit
    if (!disable_at_site) {
        cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
        cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    } else {
        cuptiActivityFlushAll(0);
    }
    cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API);
    cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API);
    finalize_requested = 1;
    if (app_takes_detach) return;  // the application's next CUDA call finalizes at its exit
    int device;
    cudaGetDevice(&device);  // a runtime call (it may make no driver call) ...
    CUdevice same;
    if (finalize_requested) cuCtxGetDevice(&same);  // ... and a driver call
    if (finalize_requested) {
        printf("{\"ok\": false, \"error\": \"no API exit took the detach\"}\n");
        exit(3);
    }
}

__global__ void empty_kernel() {}
__global__ void add_one(int *cells) { atomicAdd(cells + threadIdx.x, 1); }

static double ns_per_launch(long launches) {
    cudaDeviceSynchronize();
    auto begin = std::chrono::steady_clock::now();
    for (long i = 0; i < launches; i++) empty_kernel<<<1, 1>>>();
    cudaDeviceSynchronize();
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - begin).count() / launches;
}

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

static int cost(int cycles, long launches) {
    ns_per_launch(launches);  // module load, clocks up
    std::vector<double> never, open, closed, detached;
    for (int i = 0; i < 3; i++) never.push_back(ns_per_launch(launches));
    std::string rows;
    for (int c = 0; c < cycles; c++) {
        open_window();
        double o = ns_per_launch(launches);
        close_window();
        double a = ns_per_launch(launches);
        // reattach for a moment so that the detach starts from the same state as the library's
        open_window();
        close_and_detach();
        double d = ns_per_launch(launches);
        open.push_back(o), closed.push_back(a), detached.push_back(d);
        char row[160];
        snprintf(row, sizeof row, "%s[%.1f, %.1f, %.1f]", c ? ", " : "", o, a, d);
        rows += row;
    }
    printf("{\"ok\": true, \"launches_per_sample\": %ld, \"median_ns_per_launch\": {\"never_attached\": %.1f, "
           "\"window_open\": %.1f, \"closed_attached\": %.1f, \"detached\": %.1f}, \"never_attached\": [%.1f, %.1f, "
           "%.1f], \"cycles_open_closed_detached\": [%s], \"kernel_records\": %ld}\n",
           launches, median(never), median(open), median(closed), median(detached), never[0], never[1], never[2],
           rows.c_str(), kernel_records.load());
    return 0;
}

// ---- CUDA graphs ----------------------------------------------------------------------------
static const int NODES = 64;

struct Graph {
    cudaGraphExec_t exec = nullptr;
    cudaStream_t stream = nullptr;
};

static Graph capture(int *cells, void (*midway)() = nullptr) {
    Graph g;
    cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking);
    cudaGraph_t graph;
    cudaStreamBeginCapture(g.stream, cudaStreamCaptureModeThreadLocal);
    for (int i = 0; i < NODES; i++) {
        if (midway && i == NODES / 2) midway();
        add_one<<<1, 32, 0, g.stream>>>(cells);
        if (check) cudaGetLastError();
    }
    cudaStreamEndCapture(g.stream, &graph);
    cudaGraphInstantiate(&g.exec, graph, 0);
    cudaGraphDestroy(graph);
    return g;
}

static long replays = 0;

static void replay(Graph &g, int times) {
    for (int i = 0; i < times; i++) {
        cudaGraphLaunch(g.exec, g.stream);
        if (check) cudaGetLastError();
    }
    replays += times;
}

static int finish(const char *name, int *cells) {
    cudaError_t sync = cudaDeviceSynchronize();
    int host[32] = {0};
    cudaError_t copy = cudaMemcpy(host, cells, sizeof host, cudaMemcpyDeviceToHost);
    long expected = replays * NODES;
    int ok = sync == cudaSuccess && copy == cudaSuccess;
    for (int i = 0; i < 32 && ok; i++) ok = host[i] == expected;
    printf("{\"case\": \"%s\", \"domains\": \"%s\", \"taker\": \"%s\", \"check\": %d, \"disable_at_site\": %d, "
           "\"ok\": %s, \"sync\": \"%s\", "
           "\"cell0\": %d, \"expected\": %ld, \"kernel_records\": %ld, \"graph_kernel_records\": %ld, "
           "\"finalized_in_runtime_exit\": %ld, \"finalized_in_driver_exit\": %ld, \"withdrawn\": %ld}\n",
           name, only_at_sites ? "sites" : finalize_in_runtime ? (finalize_in_driver ? "both" : "runtime") : "driver",
           app_takes_detach ? "app" : "self", check, disable_at_site, ok ? "true" : "false", cudaGetErrorString(sync), host[0], expected,
           kernel_records.load(), graph_records.load(), finalized_in_runtime.load(), finalized_in_driver.load(), withdrawn);
    return ok ? 0 : 1;
}

static void detach_midway() { close_and_detach(); }

static int graph_case(const std::string &name) {
    int *cells;
    cudaMalloc(&cells, 32 * sizeof(int));
    cudaMemset(cells, 0, 32 * sizeof(int));
    cudaDeviceSynchronize();
    if (name == "captured-before-any-window") {  // replayed through 5 attach / detach cycles
        Graph g = capture(cells);
        for (int c = 0; c < 5; c++) {
            open_window(); replay(g, 20); cudaStreamSynchronize(g.stream); close_and_detach(); replay(g, 20);
        }
    } else if (name == "captured-in-window-stay-attached") {  // the shipped library's sequence
        open_window(); Graph g = capture(cells); replay(g, 20); cudaStreamSynchronize(g.stream); close_window();
        replay(g, 50);
        for (int c = 0; c < 3; c++) { open_window(); replay(g, 20); cudaStreamSynchronize(g.stream); close_window(); replay(g, 20); }
    } else if (name == "captured-in-window-then-detach") {
        open_window(); Graph g = capture(cells); replay(g, 20); cudaStreamSynchronize(g.stream); close_and_detach();
        replay(g, 50);
    } else if (name == "captured-in-window-detach-reattach") {  // replayed in later windows
        open_window(); Graph g = capture(cells); replay(g, 20); cudaStreamSynchronize(g.stream); close_and_detach();
        replay(g, 20);
        for (int c = 0; c < 3; c++) {
            open_window(); replay(g, 20); cudaStreamSynchronize(g.stream); close_and_detach(); replay(g, 20);
        }
    } else if (name == "captured-detached-after-a-window") {  // CUPTI attached once before, detached at capture
        open_window(); close_and_detach(); Graph g = capture(cells);
        for (int c = 0; c < 3; c++) {
            replay(g, 20); open_window(); replay(g, 20); cudaStreamSynchronize(g.stream); close_and_detach();
        }
        replay(g, 20);
    } else if (name == "detached-during-capture") {  // the window ends while a graph is being captured
        open_window(); Graph g = capture(cells, detach_midway); replay(g, 50);
        open_window(); replay(g, 20); cudaStreamSynchronize(g.stream); close_and_detach(); replay(g, 20);
    } else if (name == "replays-in-flight-at-detach") {  // finalize while graph replays are still queued
        Graph g = capture(cells);
        for (int c = 0; c < 3; c++) { open_window(); replay(g, 200); close_and_detach(); replay(g, 200); }
    } else {
        printf("{\"ok\": false, \"error\": \"unknown case %s\"}\n", name.c_str());
        return 2;
    }
    return finish(name.c_str(), cells);
}

int main(int argc, char **argv) {
    const char *domains = getenv("PROBE_DOMAINS"), *taker = getenv("PROBE_TAKER");
    if (domains && !strcmp(domains, "runtime")) finalize_in_driver = 0;
    if (domains && !strcmp(domains, "driver")) finalize_in_runtime = 0;
    if (domains && !strcmp(domains, "sites")) finalize_in_driver = 0, only_at_sites = 1;
    check = getenv("PROBE_CHECK") && !strcmp(getenv("PROBE_CHECK"), "1");
    disable_at_site = getenv("PROBE_DISABLE") && !strcmp(getenv("PROBE_DISABLE"), "site");
    app_takes_detach = taker && !strcmp(taker, "app");
    if (argc >= 4 && !strcmp(argv[1], "cost")) return cost(atoi(argv[2]), atol(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "graph")) return graph_case(argv[2]);
    fprintf(stderr, "usage: %s cost CYCLES LAUNCHES | graph CASE\n", argv[0]);
    return 2;
}
