// keel_emu_bench — speed of the emulator: one context switch, and whole launches of small kernels.
// `--quick` runs a few iterations only (CTest keeps it working); without it, prints the numbers that
// README.md reports.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../src/fiber.h"
#include "keel_emu_api.h"

using namespace keel_emu::rt;

namespace {

double now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

// Two contexts switching back and forth: main <-> fiber.
Context main_context, fiber_context;

void ping(void*) {
    for (;;) context_switch(&fiber_context, &main_context);
}

double switch_ns(long rounds) {
    static std::vector<unsigned char> stack(64 * 1024);
    context_prepare(&fiber_context, stack.data(), stack.size(), &ping, nullptr);
    const double start = now_ns();
    for (long i = 0; i < rounds; ++i) context_switch(&main_context, &fiber_context);
    return (now_ns() - start) / (2.0 * rounds);  // two switches per round
}

using Entry = void (*)(void**);

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double launch_us(Entry entry, const char* name, keel_emu_dim3 grid, keel_emu_dim3 block, void** args, int repeats,
                 int workers, uint32_t checks = 0) {
    keel_emu_options options{};
    options.size = sizeof options;
    options.worker_threads = workers;
    options.checks = checks;
    options.seed = 1;
    char error[1024];
    std::vector<double> samples;
    for (int i = 0; i < repeats + 3; ++i) {
        const double start = now_ns();
        const int status = keel_emu_launch(name, entry, args, grid, block, 0, &options, error, sizeof error);
        const double elapsed = now_ns() - start;
        if (status != KEEL_EMU_OK) {
            fprintf(stderr, "%s: %s\n", name, error);
            exit(1);
        }
        if (i >= 3) samples.push_back(elapsed / 1e3);  // the first launches map stacks and warm caches
    }
    return median(samples);
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const int repeats = quick ? 3 : 200;
    printf("context switch (%s): %.1f ns\n", KEEL_EMU_ASM_SWITCH ? "assembly" : "ucontext",
           switch_ns(quick ? 1000 : 10000000));

    void* library = dlopen(KEEL_EMU_TEST_KERNEL_DIR "/libbench.so", RTLD_NOW);
    if (library == nullptr) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    auto entry = [&](const char* name) { return reinterpret_cast<Entry>(dlsym(library, (std::string("keel_emu_entry_") + name).c_str())); };
    float* in = static_cast<float*>(keel_emu_alloc(64 * 256 * sizeof(float), 1));
    float* out = static_cast<float*>(keel_emu_alloc(64 * 256 * sizeof(float), 1));
    int* ints = static_cast<int*>(keel_emu_alloc(1024 * sizeof(int), 1));
    for (int i = 0; i < 64 * 256; ++i) in[i] = static_cast<float>(i % 17);
    void* two[] = {&in, &out};
    void* one[] = {&ints};

    printf("launch, 1 block x 1 thread, empty:                         %8.2f us\n",
           launch_us(entry("keel_bench_empty"), "keel_bench_empty", {1, 1, 1}, {1, 1, 1}, one, repeats, 0));
    printf("launch, 1 block x 256 threads, one __syncthreads:          %8.2f us\n",
           launch_us(entry("keel_bench_reverse"), "keel_bench_reverse", {1, 1, 1}, {256, 1, 1}, two, repeats, 0));
    for (int workers : {1, 2})
        printf("launch, 64 blocks x 256 threads, shuffle reduction, %d worker%s %8.2f us\n", workers,
               workers == 1 ? ": " : "s:",
               launch_us(entry("keel_bench_warp_sum"), "keel_bench_warp_sum", {64, 1, 1}, {256, 1, 1}, two, repeats,
                         workers));
    int rounds = quick ? 10 : 2000;
    void* barrier_args[] = {&ints, &rounds};
    const double us = launch_us(entry("keel_bench_barriers"), "keel_bench_barriers", {1, 1, 1}, {256, 1, 1},
                                barrier_args, quick ? 3 : 20, 1);
    printf("__syncthreads, 256 threads: %.1f ns per thread per barrier\n", us * 1e3 / (256.0 * rounds));

    // The checking modes (README.md "Checking modes"), one worker, on the instrumented object where they need it.
    void* checked = dlopen(KEEL_EMU_TEST_KERNEL_DIR "/libbench.checked.so", RTLD_NOW);
    if (checked == nullptr) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    auto stencil = [&](void* object) {
        return reinterpret_cast<Entry>(dlsym(object, "keel_emu_entry_keel_bench_stencil"));
    };
    int stencil_rounds = quick ? 2 : 32;
    void* stencil_args[] = {&in, &out, &stencil_rounds};
    const struct {
        const char* name;
        uint32_t checks;
        bool instrumented;
    } modes[] = {
        {"none", 0, false},
        {"none, instrumented object", 0, true},
        {"order", KEEL_EMU_CHECK_ORDER, false},
        {"async", KEEL_EMU_CHECK_ASYNC, false},
        {"race", KEEL_EMU_CHECK_RACE, true},
        {"init", KEEL_EMU_CHECK_INIT, true},
        {"spin", KEEL_EMU_CHECK_SPIN, true},
        {"all", KEEL_EMU_CHECKS_ALL, true},
    };
    double baseline = 0;
    for (const auto& mode : modes) {
        const double us = launch_us(stencil(mode.instrumented ? checked : library), "keel_bench_stencil", {64, 1, 1},
                                    {256, 1, 1}, stencil_args, quick ? 3 : 20, 1, mode.checks);
        if (baseline == 0) baseline = us;
        printf("checks %-26s 64 blocks x 256 threads x %d stencil rounds: %9.1f us (%.2fx)\n", mode.name,
               stencil_rounds, us, us / baseline);
    }
    keel_emu_free(in);
    keel_emu_free(out);
    keel_emu_free(ints);
    return 0;
}
